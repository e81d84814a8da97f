"""Prometheus metrics of the keeper (few, bounded labels: job, outcome, reason, stage, fault — each a
fixed vocabulary; never an address or a hash). Gauges in wei are exported as floats by the
Prometheus format itself; the ledger keeps exact integers."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = registry or CollectorRegistry()
        self.registry = r
        self.jobs_total = Counter("keeper_jobs_total", "Job runs by outcome", ["job", "outcome"], registry=r)
        self.tx_total = Counter(
            "keeper_tx_total",
            "Transactions by final outcome (confirmed, reverted, dropped)",
            ["job", "outcome"],
            registry=r,
        )
        self.skipped_total = Counter(
            "keeper_skipped_total", "Work not sent, by job and reason", ["job", "reason"], registry=r
        )
        self.item_failures = Counter(
            "keeper_item_failures_total",
            "Work items marked failed and skipped (the job went on), by job and stage (encode, check, simulate, sign)",
            ["job", "stage"],
            registry=r,
        )
        self.systemic_faults = Counter(
            "keeper_systemic_faults_total",
            "Job runs failed by a systemic fault (database_unreachable, rpc_unreachable, signer_unusable)",
            ["fault"],
            registry=r,
        )
        self.pending = Gauge("keeper_pending_txs", "Recorded transactions not yet mined", registry=r)
        self.nonce_gap = Gauge("keeper_nonce_gap", "Missing nonces below our highest pending nonce", registry=r)
        self.balance = Gauge("keeper_balance_wei", "Signer balance in wei", registry=r)
        self.low_balance = Gauge("keeper_low_balance", "1 when the balance is below keeper.low_balance_wei", registry=r)
        self.fees_paid = Counter("keeper_fees_paid_wei_total", "Gas fees paid by mined transactions, wei", registry=r)
        self.replaced = Counter("keeper_tx_replaced_total", "Fee-bump replacements sent", registry=r)
        self.reorged = Counter("keeper_tx_reorged_total", "Mined transactions removed by a reorg", registry=r)
        self.jobs_stuck = Gauge(
            "keeper_jobs_stuck", "Jobs whose current run has lasted longer than ten of its intervals", registry=r
        )
        self.replacements_deferred = Counter(
            "keeper_tx_replacements_deferred_total",
            "Fee bumps put off because the re-simulation failed without a contract refusal (node trouble)",
            registry=r,
        )
        self.receipts_off_chain = Counter(
            "keeper_receipts_off_chain_total",
            "receipts whose block is not the node's block at that height (no decision that pass)",
            registry=r,
        )
        self.track_failures = Counter(
            "keeper_track_failures_total",
            "ledger transactions a tracker pass could not decide or record (the others went on)",
            registry=r,
        )
        self.receipt_lookups_failed = Counter(
            "keeper_receipt_lookups_failed_total",
            "Transactions left undecided for a tracker pass because their receipt lookup failed",
            registry=r,
        )
        self.job_requests_reclaimed = Counter(
            "keeper_job_requests_reclaimed_total",
            "One-off job requests claimed and never finished (by an earlier leader or an earlier pass), claimed again",
            registry=r,
        )
        self.job_request_errors = Counter(
            "keeper_job_request_errors_total",
            "Passes serving one-off job requests that a database error ended (the next leader poll retries them)",
            registry=r,
        )
        self.catch_up_failures = Counter(
            "keeper_catch_up_failures_total",
            "Leader catch-ups (is the due distribution done?) a database error stopped; tried again next poll",
            registry=r,
        )
        self.distribution_retries = Counter(
            "keeper_distribution_retries_total",
            "Failed distribute runs whose period was scheduled to be tried again (with back-off)",
            registry=r,
        )
        self.tx_abandoned = Counter(
            "keeper_tx_abandoned_total",
            "Transactions every broadcast of which was refused for good, replaced by a cancel at their nonce",
            ["job"],
            registry=r,
        )
        self.gas_above_bound = Counter(
            "keeper_gas_above_bound_total",
            "Simulations whose gas estimate was above the latest block's gasLimit or keeper.max_gas_limit (not sent)",
            registry=r,
        )
        self.overdue = Gauge("keeper_overdue_markets", "Markets past end + grace with no outcome source", registry=r)
        self.disputed = Gauge(
            "keeper_disputed_markets",
            "Markets whose proposed outcome an arbiter disputed (never finalized)",
            registry=r,
        )
        self.disputes = Counter(
            "keeper_disputes_total", "Disputed proposals seen (each market counted once)", registry=r
        )
        self.is_leader = Gauge("keeper_is_leader", "1 on the leader, 0 on a standby", registry=r)
        self.leader_check_failures = Counter(
            "keeper_leader_check_failures_total",
            "Leadership checks or takeover attempts that failed on a database error (not: held elsewhere)",
            registry=r,
        )
        self.head = Gauge("keeper_head_block", "Chain head seen by the tracker", registry=r)
        self.last_success = Gauge(
            "keeper_job_last_success_timestamp", "Unix time of a job's last success", ["job"], registry=r
        )
