"""The interactive side of the Slack app (slack-bolt).

* ``commands``: the slash command and mention grammar, parsed into typed commands (pure);
* ``operations``: acknowledge, resolve, silence, escalate against the store, with
  permissions and the audit log;
* ``views``: status, incident summary and App Home as Block Kit (pure);
* ``permissions``: who may escalate, silence and resolve (users and user groups);
* ``mrkdwn``: redaction, escaping and cutting of everything shown;
* ``app``: ``create_app(settings, store, ...)``, the bolt app with its listeners;
* ``run``: ``start_http`` and ``start_socket_mode``.

The incident message itself (render) and the outbox sender live in ``bot.notify.slack``.
"""
