"""The `borgflow` client commands (jobs, backup, queue): they talk to the api over HTTP only."""
