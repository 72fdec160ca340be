"""The engine's dispatcher and tracker in one loop, as cic-eth's daemons do it, but in batches.

``register`` only queues an account (``queue_registration``). The tracker then moves every
queued account through three stages, each one transaction, each sent only after the previous
one is mined (the order verify needs):

1. ``add``:  AccountsIndex.add(A), a top-level tx from the ACCOUNT_REGISTRY_WRITER role;
2. ``gas``:  native coin from the GAS_GIFTER role to A;
3. ``gift``: Faucet.giveTo(A), signed by A itself.

All accounts waiting for the same stage go out in one JSON-RPC batch; mined transactions are
found with one eth_getBlockReceipts per new block. Each account's stage is also kept in a redis
hash, so a restarted worker picks up where the last one stopped: recovered accounts are first
probed on chain, which makes every step idempotent. Only one tracker runs per chain (a redis
lease), however many workers there are.
"""
import json
import logging
import os
import threading
import time
import uuid

from cic_seed.errors import SeedError
from cic_seed.rpc import RpcError
from cic_seed.signer import Signer
from cic_seed.transactions import broadcast

log = logging.getLogger(__name__)

BATCH = 500
STALL_SECONDS = 10.0
IDLE_MAX = 0.25  # longest sleep of an idle tracker (its first reaction to new work)
PERIOD = 0.2  # a busy tracker steps at most this often: fewer, fuller blocks (anvil mines a block per step)
MAX_IN_FLIGHT = 1500  # sent but unmined transactions: more only make the node's pool slow
MAX_TRIES = 5
LEASE_SECONDS = 5
NEXT_STAGE = {"add": "gas", "gas": "gift", "gift": None}

_QUEUE = """
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('RPUSH', KEYS[2], ARGV[1])
  return 1
end
return 0
"""
_LEASE = """
local holder = redis.call('GET', KEYS[1])
if (not holder) or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
  return 1
end
return 0
"""


def keys(chain_id: int) -> dict:
    prefix = f"cic-eth:engine:{chain_id}"
    return {"pending": f"{prefix}:pending", "queue": f"{prefix}:queue", "lease": f"{prefix}:tracker",
            "failed": f"{prefix}:failed", "done": f"{prefix}:done"}


def queue_registration(redis_client, chain_id: int, account_hex: str) -> bool:
    """Queue an account for add -> gas -> gift; False if it is already queued (a redelivered register)."""
    k = keys(chain_id)
    script = redis_client.register_script(_QUEUE)
    return bool(script(keys=[k["pending"], k["queue"]], args=[account_hex, json.dumps({"stage": "add"})]))


class Tracker:
    """Sends and follows the custodial transactions; ``run`` loops until ``stop`` is set."""

    def __init__(self, chain, nonces, redis_client, keystore, stop: threading.Event):
        self.chain = chain
        self.nonces = nonces
        self.redis = redis_client
        self.keystore = keystore
        self.stop = stop
        self.keys = keys(chain.chain_id)
        self.node = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.items = {}  # account hex -> {"stage", "tx", "t", "nonce", "tries", "probe"}
        self.block = None
        self.stalled = set()
        self._lease_at = 0.0

    def run(self):
        """Hold the lease, recover unfinished accounts, then step until stopped."""
        lease = self.redis.register_script(_LEASE)
        while not self.stop.is_set() and not lease(keys=[self.keys["lease"]], args=[self.node, LEASE_SECONDS]):
            self.stop.wait(0.5)
        if self.stop.is_set():
            return
        self._lease_at = time.monotonic()
        self.block = self.chain.rpc.block_number()
        for account, state in self.redis.hgetall(self.keys["pending"]).items():
            self.items[_text(account)] = _item(json.loads(state), probe=True)
        if self.items:
            log.info("tracker recovered %d unfinished accounts", len(self.items))
        idle = 0.002
        while not self.stop.is_set():
            if time.monotonic() - self._lease_at > 1:
                if not lease(keys=[self.keys["lease"]], args=[self.node, LEASE_SECONDS]):
                    log.warning("another tracker took over the lease; this one stops")
                    return
                self._lease_at = time.monotonic()
            started = time.monotonic()
            try:
                busy = self.step()
            except (SeedError, OSError) as e:
                log.warning("tracker step failed, retrying: %s", e)
                busy = False
            if busy:
                idle = 0.002
                self.stop.wait(max(0.0, PERIOD - (time.monotonic() - started)))
            else:
                self.stop.wait(idle)
                idle = min(idle * 2, IDLE_MAX)
        if self.redis.get(self.keys["lease"]) in (self.node, self.node.encode()):
            self.redis.delete(self.keys["lease"])

    def step(self) -> bool:
        """One round: take new accounts, probe, send what is due, collect receipts, save stages."""
        changed = set()
        for account in self.redis.lpop(self.keys["queue"], BATCH) or []:
            account = _text(account)
            if account not in self.items:  # fresh from register: nothing to probe (a duplicate add reverts)
                self.items[account] = _item({"stage": "add"}, probe=False)
                changed.add(account)
        self._probe(changed)
        sent = self._send(changed)
        mined = self._receipts(changed)
        self._repair()
        self._save(changed)
        return bool(changed or sent or mined)

    def _probe(self, changed):
        due = [a for a, item in self.items.items() if item["probe"]][:BATCH]
        if not due:
            return
        for account, (have, balance, usable, nonce) in zip(due, self.chain.probe(due)):
            item = self.items[account]
            item.update(probe=False, tx=None, nonce=nonce)
            if not have:
                item["stage"] = "add"
            elif not usable:
                item["stage"] = None  # giveTo already done
            elif balance >= self.chain.gas_needed:
                item["stage"] = "gift"
            else:
                item["stage"] = "gas"
            changed.add(account)

    def _due(self, stage):
        return [a for a, item in self.items.items() if item["stage"] == stage and item["tx"] is None
                and not item["probe"]][:BATCH]

    def _send(self, changed) -> int:
        """Sign what is due for every stage and send it all in one batch (so the node mines one block)."""
        if sum(1 for item in self.items.values() if item["tx"]) >= MAX_IN_FLIGHT:
            return 0
        outgoing = []  # (role signer or None, account, signed tx)
        adds = self._due("add")
        if adds:
            first = self.nonces.reserve(self.chain.writer.address, len(adds))
            outgoing += [(self.chain.writer, a, self.chain.add_tx(a, first + i)) for i, a in enumerate(adds)]
        gas = self._due("gas")
        if gas:
            first = self.nonces.reserve(self.chain.gifter.address, len(gas))
            outgoing += [(self.chain.gifter, a, self.chain.gas_tx(a, first + i)) for i, a in enumerate(gas)]
        gifts = self._due("gift")
        if gifts:
            held = self.keystore.private_keys(gifts)
            for account in gifts:
                if account in held:
                    signer = Signer(held[account])
                    outgoing.append((None, account, self.chain.give_to_tx(signer, self.items[account]["nonce"])))
                else:
                    self._finish(account, "no key held for it: cannot send its giveTo", changed)
        count = 0
        now = time.monotonic()
        errors = broadcast(self.chain.rpc, [tx for _, _, tx in outgoing])
        for (role, account, tx), error in zip(outgoing, errors):
            item = self.items[account]
            changed.add(account)
            if error is None:
                item.update(tx=tx.hash, t=now)
                count += 1
                continue
            log.info("node refused %s tx for %s: %s", item["stage"], account, error.message)
            self._failed_try(account, error.message, changed)
            if role is not None:
                self.stalled.add(role)  # the refused nonce is now a gap
                if "nonce too low" in error.message:
                    self.nonces.resync(role.address)
        return count

    def _receipts(self, changed) -> int:
        head = self.chain.rpc.block_number()
        mined = {}
        if head > self.block:
            numbers = list(range(self.block + 1, head + 1))
            for number, receipts in zip(numbers, self.chain.rpc.batch(
                    [("eth_getBlockReceipts", [hex(n)]) for n in numbers])):
                if isinstance(receipts, RpcError):
                    raise OSError(f"eth_getBlockReceipts({number}) failed: {receipts.message}")
                for receipt in receipts or []:
                    mined[receipt["transactionHash"]] = int(receipt["status"], 16) == 1
            self.block = head
        count = 0
        now = time.monotonic()
        by_tx = {item["tx"]: a for a, item in self.items.items() if item["tx"]}
        for tx, ok in mined.items():
            account = by_tx.get(tx)
            if account is None:
                continue
            item = self.items[account]
            changed.add(account)
            count += 1
            if not ok:
                self._failed_try(account, f"{item['stage']} tx {tx} reverted", changed)
            elif NEXT_STAGE[item["stage"]] is None:
                self._finish(account, None, changed)
            else:
                item.update(stage=NEXT_STAGE[item["stage"]], tx=None)
        slow = [a for a, item in self.items.items() if item["tx"] and now - item["t"] > STALL_SECONDS]
        if slow:
            self._check_slow(slow[:BATCH], now, changed)
        return count

    def _check_slow(self, slow, now, changed):
        """Transactions unmined for a while: wait if the node has them, resend (after a probe) if it lost them."""
        answers = self.chain.rpc.batch([("eth_getTransactionByHash", [self.items[a]["tx"]]) for a in slow])
        for account, known in zip(slow, answers):
            item = self.items[account]
            role = {"add": self.chain.writer, "gas": self.chain.gifter}.get(item["stage"])
            if isinstance(known, dict) and known.get("blockNumber") is None:
                item["t"] = now  # still in the node's pool: maybe behind a nonce gap of its sender
                item["waits"] = item.get("waits", 0) + 1
                if role is not None:
                    self.stalled.add(role)
                else:
                    log.warning("%s tx %s of %s waits in the node's pool for %d s: is the node mining?",
                                item["stage"], item["tx"], account, item["waits"] * STALL_SECONDS)
                continue
            log.info("%s tx %s of %s %s: probing again", item["stage"], item["tx"], account,
                     "was lost" if known is None else "was mined unseen")
            if known is None and role is not None:
                self.stalled.add(role)
            item.update(probe=True, tx=None)
            changed.add(account)

    def _repair(self):
        for signer in list(self.stalled):
            self.nonces.fill_gaps(signer, self.chain.gas_price)
        self.stalled.clear()

    def _failed_try(self, account, reason, changed):
        item = self.items[account]
        item["tries"] = item.get("tries", 0) + 1
        item.update(probe=True, tx=None)
        if item["tries"] >= MAX_TRIES:
            self._finish(account, reason, changed)

    def _finish(self, account, failure, changed):
        if failure:
            log.error("giving up on %s: %s", account, failure)
        self.items[account].update(stage=None, probe=False, tx=None, failure=failure)
        changed.add(account)

    def _save(self, changed):
        if not changed:
            return
        pipe = self.redis.pipeline(transaction=False)
        for account in changed:
            item = self.items.get(account)
            if item is None:
                continue
            if item["stage"] is None and not item["probe"]:
                pipe.hdel(self.keys["pending"], account)
                if item.get("failure"):
                    pipe.hset(self.keys["failed"], account, item["failure"])
                else:
                    pipe.incr(self.keys["done"])
                del self.items[account]
            else:
                pipe.hset(self.keys["pending"], account,
                          json.dumps({"stage": item["stage"], "nonce": item.get("nonce", 0)}))
        pipe.execute()


def _item(state, probe):
    return {"stage": state.get("stage", "add"), "tx": None, "t": 0.0, "nonce": state.get("nonce", 0),
            "tries": 0, "probe": probe}


def _text(value):
    return value.decode() if isinstance(value, bytes) else value
