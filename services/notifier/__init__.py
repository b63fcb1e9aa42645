"""The notifier: turns events people care about into apprise notifications, once each."""
