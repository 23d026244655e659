"""Proven liveness: a canary file change that must travel kernel -> rules -> outputs in time."""
