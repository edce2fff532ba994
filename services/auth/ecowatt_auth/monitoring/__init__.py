"""Security monitoring: rules over audit and device events that raise security alerts."""
