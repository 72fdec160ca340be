"""Pre-flight checks of the importer wallet, so a run fails before it sends anything."""
from .contracts import ACCOUNTS_INDEX, function
from .errors import WalletError
from .rpc import RpcError


def require_writer(network, wallet):
    """The wallet must be allowed to ``add`` to the AccountsIndex."""
    answer = function(ACCOUNTS_INDEX, "isWriter").decode(
        network.rpc.eth_calls([(network.accounts_index, function(ACCOUNTS_INDEX, "isWriter").hexdata(wallet.address))])[0])
    if answer is not True:
        detail = f" ({answer.message})" if isinstance(answer, RpcError) else ""
        raise WalletError(f"wallet {wallet.address} is not a writer on the AccountsIndex {network.accounts_index}"
                          f"{detail}: have the index owner call addWriter({wallet.address})")


def require_gas(network, wallet, needed_wei: int, what: str):
    have = network.rpc.balances([wallet.address])[0]
    if have < needed_wei:
        raise WalletError(f"wallet {wallet.address} holds {have / 1e18:.6f} of the native coin but {what} need "
                          f"{needed_wei / 1e18:.6f}: send it at least {(needed_wei - have) / 1e18:.6f} more")
