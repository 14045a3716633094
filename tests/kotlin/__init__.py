"""Helpers for checking the generated Android module: the Kotlin toolchain, API stubs, a sample module."""
