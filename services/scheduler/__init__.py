"""The scheduler: turns cron schedules into queued jobs, one per fire time."""
