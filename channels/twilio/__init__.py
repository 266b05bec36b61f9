"""What the SMS and voice channels share about Twilio: its settings (settings.py), its REST
client (rest.py) and its request signature check (signature.py)."""
