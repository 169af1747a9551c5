"""The ground every app stands on: errors, logs, metrics, API base classes, event bodies, the publish bridge.

It imports no app of HearO.
"""
