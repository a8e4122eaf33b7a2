"""The store's SQLAlchemy URL, with its password from the secret."""

from __future__ import annotations

from paytriage.config.models import StoreConfig


def store_url(cfg: StoreConfig) -> str:
    """The SQLAlchemy URL with the password from its secret (never written in the file)."""
    if cfg.password is None or not cfg.password.is_set:
        return cfg.url
    from sqlalchemy.engine import make_url

    return (
        make_url(cfg.url).set(password=cfg.password.reveal()).render_as_string(hide_password=False)
    )
