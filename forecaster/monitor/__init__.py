"""The forecast ledger and live monitoring: every served forecast recorded (schema, store), scored
against the bars that followed (score) and summed up per model version and step (report)."""
