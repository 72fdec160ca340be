"""Chain specs such as ``evm:bloxberg:8996`` (arch:fork:network_id[:common_name])."""
from dataclasses import dataclass

from .errors import ConfigError


@dataclass(frozen=True)
class ChainSpec:
    arch: str
    fork: str
    network_id: int
    common_name: str | None = None

    @classmethod
    def parse(cls, text: str) -> "ChainSpec":
        parts = (text or "").split(":")
        if len(parts) not in (3, 4) or not parts[0] or not parts[1]:
            raise ConfigError(f"invalid chain spec {text!r}: expected arch:fork:network_id[:common_name], "
                              "e.g. evm:bloxberg:8996")
        try:
            network_id = int(parts[2])
        except ValueError:
            raise ConfigError(f"invalid chain spec {text!r}: network id {parts[2]!r} is not a number") from None
        return cls(parts[0], parts[1], network_id, parts[3] if len(parts) == 4 else None)

    @property
    def identity_key(self) -> str:
        """Key of this chain's addresses in a Person's identities (2021 shape: ``bloxberg:8996``)."""
        return f"{self.common_name or self.fork}:{self.network_id}"

    def asdict(self) -> dict:
        """The 2022 cic-eth client's chain_spec dict (chainlib >= 0.0.17)."""
        return {"arch": self.arch, "fork": self.fork, "network_id": self.network_id,
                "common_name": self.common_name, "custom": []}

    def __str__(self):
        return ":".join([self.arch, self.fork, str(self.network_id)] + ([self.common_name] if self.common_name else []))
