"""Unit tests see the default configuration: the integration fixtures point service keys at
their own devnet for the whole session, so each unit test runs with those keys removed."""
import pytest

SERVICE_KEYS = ("DEVNET_STATE_DIR", "ETH_PROVIDER", "CIC_REGISTRY_ADDRESS", "CIC_CHAIN_SPEC", "ETH_KEYFILE",
                "ETH_PASSPHRASE_FILE", "ETH_PASSPHRASE", "REDIS_HOST", "REDIS_PORT", "REDIS_DB", "REDIS_HOST_CALLBACK",
                "REDIS_PORT_CALLBACK", "CELERY_BROKER_URL", "CELERY_RESULT_URL", "CELERY_QUEUE", "META_URL",
                "USSD_PROVIDER")


@pytest.fixture(autouse=True)
def default_service_env(monkeypatch):
    for key in SERVICE_KEYS:
        monkeypatch.delenv(key, raising=False)
