"""Paging: who is on call (schedule.py), their calendar feed (ical.py), and later the paging services.

Pure library code: no Temporal workflow imports here, and workflows/ never imports this package;
an activity resolves the on-call person at the moment an escalation level fires.
"""
