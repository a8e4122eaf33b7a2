"""The interactive side of the Slack app (slack-bolt).

* ``commands``: the slash command and mention grammar, parsed into typed commands (pure);
* ``operations``: acknowledge, resolve, silence, escalate against the store, with
  permissions and the audit log;
* ``views``: status, incident summary and App Home as Block Kit (pure);
* ``permissions``: who may escalate, silence and resolve (users and user groups);
* ``options``: what the app needs of the configuration (``AppOptions``);
* ``app``: ``create_app(options, store, client=...)``, the bolt app with its listeners;
* ``run``: ``start_http`` and ``start_socket_mode``.

The composition root (``paytriage.app.compose.create_slack_app``) builds it from the
settings. The incident message itself (render) and the Slack notifier live in
``paytriage.notify.slack``; text escaping in ``paytriage.notify.slack.text``.
"""
