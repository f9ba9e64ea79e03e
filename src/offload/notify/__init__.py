"""Telling people a job is done: webhooks (Standard Webhooks, signed, retried, SSRF-guarded)
and email over SMTP. The :class:`~offload.notify.dispatcher.Dispatcher` turns the store's event
feed into deliveries and sends them, outside the API request path."""
