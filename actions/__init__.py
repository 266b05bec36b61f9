"""Actions: HTTP requests to the business's own systems (check a table, create a booking, freeze
a card) and outcome deliveries (the finished record POSTed to the business).

Layering: below dialogue/ (which calls actions), above escalation/, extraction/ and storage/.
"""
