"""bizon-rs's stand-in for the bizon.source.auth.authenticators package."""
