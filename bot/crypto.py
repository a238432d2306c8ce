"""Secrets at rest: MultiFernet over BOT_ENCRYPTION_KEY (several keys, newest first)."""

from __future__ import annotations

from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from bot.errors import BotError, SecretStorageDisabled


class SecretBox:
    """Encrypts and decrypts stored secrets; refuses to store anything without a key."""

    def __init__(self, keys: Sequence[str]) -> None:
        self._fernet = MultiFernet([Fernet(k.encode()) for k in keys]) if keys else None

    @property
    def enabled(self) -> bool:
        """True when BOT_ENCRYPTION_KEY is configured."""
        return self._fernet is not None

    def encrypt(self, plaintext: str) -> str:
        """Encrypt with the newest key; raise SecretStorageDisabled without one."""
        if self._fernet is None:
            raise SecretStorageDisabled(
                "BOT_ENCRYPTION_KEY is not set, so secrets cannot be stored; set it and try again."
            )
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, ciphertext: str) -> str:
        """Decrypt with any configured key."""
        if self._fernet is None:
            raise SecretStorageDisabled(
                "BOT_ENCRYPTION_KEY is not set; stored secrets cannot be read."
            )
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken as exc:
            raise BotError(
                "a stored secret cannot be decrypted with BOT_ENCRYPTION_KEY (was a key removed?)"
            ) from exc

    def rotate(self, ciphertext: str) -> str:
        """Re-encrypt a ciphertext with the newest key."""
        if self._fernet is None:
            raise SecretStorageDisabled("BOT_ENCRYPTION_KEY is not set.")
        try:
            return self._fernet.rotate(ciphertext.encode()).decode()
        except InvalidToken as exc:
            raise BotError(
                "a stored secret cannot be decrypted with any key in BOT_ENCRYPTION_KEY "
                "(keep the old key listed after the new one until rotation is done)"
            ) from exc
