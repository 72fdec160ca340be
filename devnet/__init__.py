"""The local devnet: anvil with the real CIC contracts, plus the custodial services a backend needs.

``python -m devnet up|down|status|auto-up`` (``make devnet-up``) drives it; ``devnet.network.Devnet``
is the library form. One module per service, each started through ``devnet.process.Service``.
"""
