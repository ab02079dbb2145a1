"""Example machines, each run by the tests: counter, coffee_shop, dentist_booking, payments."""
