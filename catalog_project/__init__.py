"""The catalog service: a read replica of products, fed by product events."""
