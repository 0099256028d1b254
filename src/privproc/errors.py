"""The root of privproc's exception hierarchy.

Every exception class privproc defines derives from :class:`PrivprocError`, so a caller
that embeds privproc can tell "privproc refused or failed, on purpose" from a bug with a
single ``except PrivprocError``. Each layer keeps its own root below it; catch those to
handle one layer's failures. Classes that were also a :class:`ValueError` or a
:class:`RuntimeError` stay one.

Layer roots, one line each (module: class -- what it means):

* wire.errors: WireError -- bad input to the sans-IO protocol core (HPKE, Binary HTTP,
  OHTTP, Merkle, notes, checkpoints, blind RSA, Privacy Pass, registrations, limits).
* attest.errors: AttestationError -- evidence that must not be trusted.
* attest.errors: PlatformError -- the local TEE platform cannot produce evidence.
* attest.measure: MeasurementToolError (also a RuntimeError) -- no measurement here.
* attest.cli: UsageError -- an ``attest``/``measure`` command-line input is unusable.
* client.errors: ClientError -- every failure the client SDK reports.
* client.chat_export: ChatExportError (also a ValueError) -- not a known chat export.
* clikit: CommandError -- a command refused (UsageError below it: bad options).
* tlog.client: LogClientError -- client-side log verification failed.
* tlog.storage: StorageError -- the log storage failed or changed underneath.
* tlog.record: RecordError (also a ValueError) -- a malformed log record.
* tlog.keys: KeyFileError -- an unusable log key file.
* tlog.witness: AddCheckpointError (also a ValueError) -- a malformed add-checkpoint.
* tlog.witness: WitnessStoreError -- the witness's state store failed.
* tlog.witness_app: WitnessKeyError -- an unusable witness key file.
* tlog.witness_client: WitnessError -- a witness refused or could not be reached.
* inference.backend: InferenceError -- every inference failure.
* issuer.accounts: AccountError -- the bearer token names no account.
* issuer.keystore: IssuerKeyError -- an unusable issuer key file.
* issuer.quota: QuotaUnavailable -- the quota store cannot be reached.
* gateway.keystore: KeyStoreError -- an unusable gateway key state.
* gateway.replay: ReplayStoreUnavailable -- the shared replay store cannot be reached.
* gateway.spend: SpendStoreUnavailable -- the token spend store cannot be reached.
* gateway.transparency: StapleUnavailable -- no log bundle to staple yet.
* gateway.directory: RegistryUnavailable, RegistryFull -- the node registry.
* node.worker: WorkerStartError -- an inference worker could not start.
* node.core: TaskInputError -- a task's input is invalid.
* keyring: KeyRingError -- a key ring operation is impossible or a key file unusable.
* secrets: SecretError -- a secret's file or environment variable is unusable.
* service: BodyTooLarge -- a request body over the service's cap.
* up.supervisor: ServiceFailed -- a child service exited or never became healthy.

``tests/test_errors.py`` imports every module and checks that no exception class is
left outside this root.
"""

from __future__ import annotations

__all__ = ["PrivprocError"]


class PrivprocError(Exception):
    """The root of every error privproc raises on purpose."""
