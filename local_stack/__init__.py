"""The jobs flow on loopback with no AWS account: what `scripts/serve` runs.

On AWS an upload job crosses four services (API Gateway + Lambda, S3, EventBridge, and SES or a
webhook for the notice). Locally, `chalice local` plays the API; a moto server in this process
plays S3, EventBridge, SQS, SES and SSM Parameter Store; and the one thing moto cannot do without
Docker, running a Lambda function on an event, is done by a relay that reads the events
EventBridge put on SQS queues and calls app.py's own handlers with them. Everything is started
and stopped by one supervisor process (`python -m local_stack`, see supervisor.py), so stopping
`scripts/serve` stops all of it.

Nothing here ships in the Lambda package: Chalice zips app.py and chalicelib/ only.
"""
