"""The commonsense pipeline's domain critics: ATOMIC rules and the trained MiniLM pair classifier."""
