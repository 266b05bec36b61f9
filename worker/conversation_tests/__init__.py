"""`channel-worker test`: conversation tests for a worker spec (docs/testing.md).

model.py (the file format), loader.py (files to cases, errors by line), stubs.py (the business's
systems as a local HTTP server per case), console.py, sms.py, email.py and voice.py (one channel
each, behind channel.py's protocol), expectations.py (what a step expects against what happened),
runner.py (cases in parallel, each with its own store and clock), report.py (text and JUnit XML),
coverage.py (what no case exercised) and variants.py (`--vary`: other ways to say each line)."""
