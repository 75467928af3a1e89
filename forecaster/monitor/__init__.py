"""The forecast ledger and live monitoring: every served forecast recorded (schema, store), scored
against the bars that followed (score) and summed up per model version and step (report)."""

# The service's setting `ledger_uri` and the CLI's --ledger-uri; here, not in `store`, so that the
# command line's help reads it without importing SQLAlchemy.
LEDGER_URI_ENV = "FORECASTER_LEDGER_URI"
