"""bizon-rs's stand-in for the bizon package: the parts of bizon 0.6.4's API a custom source uses."""
