"""The dispatcher: decides what runs under the limits and sends it, never twice."""
