"""The incident's conversation: its declaration, thread, reactions and files.

slack/ speaks to Slack's Web API through slack_sdk.
"""
