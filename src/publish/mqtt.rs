//! The rumqttc side: client options (credentials, TLS, last will) and the connection thread.
//!
//! The connection thread is the only one that polls rumqttc's event loop, and the only one
//! that waits on the network. It tells the outbox about connections, writes and
//! acknowledgements, forwards commands to the command thread, and sleeps with capped
//! exponential backoff between failed connection attempts (rumqttc retries at once, thousands
//! of times a second, if left to itself).

use std::path::Path;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{
    Client, Connection, Event, Incoming, LastWill, MqttOptions, Outgoing, TlsConfiguration,
    Transport,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{MqttConfig, TlsConfig};

use super::commands::MAX_COMMAND_BYTES;
use super::outbox::{Outbox, WINDOW};
use super::{CommandPayload, PublishError, Shared};

/// Incoming packets larger than this close the connection (rumqttc's limit); commands above
/// [`MAX_COMMAND_BYTES`] are refused with a response well before.
const MAX_INCOMING_BYTES: usize = 1024 * 1024;
/// A frame record with the most faces the detector can give stays well below this.
const MAX_OUTGOING_BYTES: usize = 1024 * 1024;

/// The client and the connection to poll, from the configuration.
pub(super) fn client(
    config: &MqttConfig,
    device: &str,
    will: LastWill,
) -> Result<(Client, Connection), PublishError> {
    let client_id = if config.client_id.is_empty() {
        format!("facecast-{device}")
    } else {
        config.client_id.clone()
    };
    let mut options = MqttOptions::new(client_id, &config.host, config.port);
    options
        .set_keep_alive(Duration::from_millis(config.keep_alive_ms))
        // A restarted broker has no session anyway; the outbox re-sends what was not acknowledged.
        .set_clean_session(true)
        .set_inflight(WINDOW as u16)
        .set_max_packet_size(MAX_INCOMING_BYTES, MAX_OUTGOING_BYTES)
        .set_last_will(will);
    if !config.username.is_empty() {
        options.set_credentials(&config.username, &config.password.0);
    }
    if config.tls.enabled {
        let tls = tls_config(&config.tls)?;
        options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(tls)));
    }
    // Room for a full window plus the subscription and the disconnect.
    Ok(Client::new(options, WINDOW + 8))
}

/// rustls on ring: the broker must present a certificate chaining to `ca_file` for the host
/// name (or address) configured; the client presents `cert_file` when set.
fn tls_config(tls: &TlsConfig) -> Result<Arc<rustls::ClientConfig>, PublishError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in read_certificates(&tls.ca_file)? {
        roots
            .add(cert)
            .map_err(|e| certificate_error(&tls.ca_file, e.to_string()))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let config = if tls.cert_file.as_os_str().is_empty() {
        builder.with_no_client_auth()
    } else {
        let key = PrivateKeyDer::from_pem_file(&tls.key_file)
            .map_err(|e| certificate_error(&tls.key_file, format!("no usable private key: {e}")))?;
        builder.with_client_auth_cert(read_certificates(&tls.cert_file)?, key)?
    };
    Ok(Arc::new(config))
}

fn certificate_error(path: &Path, reason: String) -> PublishError {
    PublishError::Certificate {
        path: path.into(),
        reason,
    }
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, PublishError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| certificate_error(path, e.to_string()))?;
    if certs.is_empty() {
        return Err(certificate_error(
            path,
            "no PEM certificate in the file".into(),
        ));
    }
    Ok(certs)
}

/// Doubling waits between connection attempts, capped.
struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            next: initial,
        }
    }

    /// The wait before the next attempt; each call doubles the one after.
    fn delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }

    fn reset(&mut self) {
        self.next = self.initial;
    }
}

/// Applies one rumqttc event about publishing to the outbox.
fn track(outbox: &mut Outbox, event: &Event) {
    match event {
        Event::Outgoing(Outgoing::Publish(pkid)) => outbox.written(*pkid),
        Event::Incoming(Incoming::PubAck(ack)) => outbox.acknowledged(ack.pkid),
        Event::Incoming(Incoming::PubComp(comp)) => outbox.acknowledged(comp.pkid),
        _ => {}
    }
}

/// Polls the connection until the publisher stops; `commands` receives the payloads of `cmd`.
pub(super) fn run(
    mut connection: Connection,
    shared: Arc<Shared>,
    commands: Option<SyncSender<CommandPayload>>,
    backoff: (Duration, Duration),
) {
    let mut backoff = Backoff::new(backoff.0, backoff.1);
    while let Ok(event) = connection.recv() {
        match event {
            Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                backoff.reset();
                shared.count_connection();
                log::info!("connected to the MQTT broker {}", shared.broker);
                // Subscriptions do not survive a new session: subscribe at every connection.
                if commands.is_some() {
                    if let Err(e) = shared
                        .client
                        .try_subscribe(&shared.topics.cmd, shared.qos.commands)
                    {
                        log::warn!("cannot subscribe to {}: {e}", shared.topics.cmd);
                    }
                }
                let mut outbox = shared.lock_outbox();
                outbox.connected(&shared.on_connect);
                shared.pump(&mut outbox);
            }
            Ok(Event::Incoming(Incoming::Publish(publish))) => {
                if let (Some(commands), true) = (&commands, publish.topic == shared.topics.cmd) {
                    let payload = if publish.payload.len() > MAX_COMMAND_BYTES {
                        CommandPayload::Oversized(publish.payload.len())
                    } else {
                        CommandPayload::Bytes(publish.payload.to_vec())
                    };
                    match commands.try_send(payload) {
                        Ok(()) => {}
                        Err(TrySendError::Full(payload)) => shared.refuse_busy(&payload),
                        Err(TrySendError::Disconnected(_)) => {
                            log::warn!("the command thread has ended; command ignored")
                        }
                    }
                }
            }
            Ok(Event::Incoming(Incoming::SubAck(ack))) => {
                if ack
                    .return_codes
                    .iter()
                    .any(|code| matches!(code, rumqttc::SubscribeReasonCode::Failure))
                {
                    log::warn!(
                        "the broker refused the subscription to {}",
                        shared.topics.cmd
                    );
                }
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                log::info!("disconnected from the MQTT broker");
                break;
            }
            Ok(event) => {
                let mut outbox = shared.lock_outbox();
                track(&mut outbox, &event);
                shared.pump(&mut outbox);
                drop(outbox);
                shared.outbox_changed.notify_all();
            }
            Err(e) => {
                let was_connected = {
                    let mut outbox = shared.lock_outbox();
                    let was_connected = outbox.is_connected();
                    // Acknowledgements read before the error still count.
                    let stale: Vec<Event> = connection.eventloop.state.events.drain(..).collect();
                    for event in &stale {
                        track(&mut outbox, event);
                    }
                    // rumqttc would replay what it held only into a resumed session, and its
                    // requests channel may hold messages handed over after its own clean-up:
                    // drop both, the outbox has every one of them and re-sends them in order.
                    connection.eventloop.clean();
                    connection.eventloop.pending.clear();
                    outbox.disconnected();
                    was_connected
                };
                shared.outbox_changed.notify_all();
                if shared.is_stopped() {
                    break;
                }
                let delay = backoff.delay();
                if was_connected {
                    log::warn!("lost the MQTT broker {}: {e}; reconnecting", shared.broker);
                } else {
                    log::warn!(
                        "cannot connect to the MQTT broker {}: {e}; retrying in {delay:?}",
                        shared.broker
                    );
                }
                if !shared.sleep_unless_stopping(delay) {
                    break;
                }
            }
        }
    }
    shared.connection_ended();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(500));
        let delays: Vec<u128> = (0..5).map(|_| backoff.delay().as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 500, 500]);
        backoff.reset();
        assert_eq!(backoff.delay(), Duration::from_millis(100));
    }

    #[test]
    fn unreadable_certificates_are_refused_with_the_file() {
        let dir = std::env::temp_dir().join(format!("facecast-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let not_pem = dir.join("ca.pem");
        std::fs::write(&not_pem, "this is not a certificate\n").unwrap();
        let tls = TlsConfig {
            enabled: true,
            ca_file: not_pem.clone(),
            ..TlsConfig::default()
        };
        let err = tls_config(&tls).unwrap_err().to_string();
        assert!(
            err.contains("ca.pem") && err.contains("no PEM certificate"),
            "{err}"
        );
        let missing = TlsConfig {
            ca_file: dir.join("missing.pem"),
            ..tls
        };
        let err = tls_config(&missing).unwrap_err().to_string();
        assert!(err.contains("missing.pem"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
