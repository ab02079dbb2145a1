"""Example machines, each run by the tests: counter, coffee_shop (and more to come)."""
