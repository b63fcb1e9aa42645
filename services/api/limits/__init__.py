"""Request limits: a body size cap, websockets per token, and a wait for token guessers.

Each is kept in this process's memory: with several api replicas, each counts on its
own (N websockets per token per replica, failures per address per replica).
"""
