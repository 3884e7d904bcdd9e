"""tracer: see what an optimizer does inside."""
