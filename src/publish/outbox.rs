//! The outbox: every message facecast publishes waits here until the broker has it. Pure state,
//! no network: the connection thread tells it what happened (connected, written, acknowledged,
//! disconnected) and hands messages to the MQTT client through `pump`'s `submit`.
//!
//! Why not leave queueing to rumqttc: on a new session (every reconnect to a restarted broker)
//! rumqttc 0.25 discards what it had in flight and in its request channel, silently. So a
//! message stays here until its acknowledgement (QoS 1 and 2) or until it was written (QoS 0),
//! and everything not yet acknowledged when the connection drops goes back to the front of its
//! queue, in order. Hand-over is limited to a small window so that little is in rumqttc's
//! hands at any time.
//!
//! **Invariant:** `made == sent + dropped + queued` for every kind of message, at all times.

use std::collections::VecDeque;

use rumqttc::QoS;

/// At most this many messages are handed to rumqttc and not yet done.
pub const WINDOW: usize = 32;

/// What a message is, for priorities and counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Sent at every connection: `online` status, Home Assistant discovery.
    Connect,
    /// A message of `events`.
    Event,
    /// A `cmd/response`.
    Response,
    /// The `offline` status at a stop.
    Offline,
    Stats,
    Faces,
}

const KINDS: usize = 6;

impl Kind {
    fn index(self) -> usize {
        self as usize
    }

    /// The queue a kind waits in; lower lanes go first.
    fn lane(self) -> Lane {
        match self {
            Kind::Connect => Lane::Connect,
            Kind::Event | Kind::Response | Kind::Offline => Lane::Events,
            Kind::Stats => Lane::Stats,
            Kind::Faces => Lane::Faces,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lane {
    Connect,
    Events,
    Stats,
    Faces,
}

const LANES: [Lane; 4] = [Lane::Connect, Lane::Events, Lane::Stats, Lane::Faces];

/// One message to publish.
#[derive(Debug, Clone)]
pub struct Message {
    pub kind: Kind,
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: QoS,
    pub retain: bool,
}

/// Counters of one kind of message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KindCounts {
    /// Messages queued since the start.
    pub made: u64,
    /// Acknowledged by the broker (QoS 1, 2) or written to it (QoS 0).
    pub sent: u64,
    /// Dropped because its queue was full (oldest first).
    pub dropped: u64,
    /// Waiting or in flight now.
    pub queued: u64,
}

/// A message handed to the client; `pkid` is known once rumqttc has written it.
#[derive(Debug)]
struct Handed {
    message: Message,
    written: Option<u16>,
}

#[derive(Debug)]
pub struct Outbox {
    lanes: [VecDeque<Message>; 4],
    capacity: [usize; 4],
    handed: VecDeque<Handed>,
    counts: [KindCounts; KINDS],
    connected: bool,
}

impl Outbox {
    /// `events` and `faces` are the queue capacities; stats keep only the latest report.
    pub fn new(events: usize, faces: usize) -> Self {
        Outbox {
            lanes: Default::default(),
            capacity: [usize::MAX, events, 1, faces],
            handed: VecDeque::with_capacity(WINDOW),
            counts: [KindCounts::default(); KINDS],
            connected: false,
        }
    }

    fn lane(&mut self, lane: Lane) -> &mut VecDeque<Message> {
        &mut self.lanes[lane as usize]
    }

    /// Queues a message; when its queue is full the oldest one there is dropped and counted.
    pub fn push(&mut self, message: Message) {
        let lane = message.kind.lane();
        self.counts[message.kind.index()].made += 1;
        self.counts[message.kind.index()].queued += 1;
        self.lane(lane).push_back(message);
        self.trim(lane);
    }

    fn trim(&mut self, lane: Lane) {
        while self.lanes[lane as usize].len() > self.capacity[lane as usize] {
            if let Some(old) = self.lane(lane).pop_front() {
                let counts = &mut self.counts[old.kind.index()];
                counts.queued -= 1;
                counts.dropped += 1;
            }
        }
    }

    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// A connection is up: the `Connect` messages go first, then what waited.
    pub fn connected(&mut self, on_connect: &[Message]) {
        self.connected = true;
        for message in on_connect {
            self.push(message.clone());
        }
    }

    /// The connection is gone: everything handed over and not yet done goes back to the front
    /// of its queue, in order, except `Connect` messages (made again at the next connection).
    pub fn disconnected(&mut self) {
        self.connected = false;
        while let Some(handed) = self.handed.pop_back() {
            let kind = handed.message.kind;
            if kind == Kind::Connect {
                self.uncount(kind, false);
            } else {
                let lane = kind.lane();
                self.lane(lane).push_front(handed.message);
            }
        }
        let stale: Vec<Message> = self.lane(Lane::Connect).drain(..).collect();
        for message in stale {
            self.uncount(message.kind, false);
        }
        for lane in LANES {
            self.trim(lane);
        }
    }

    /// A message leaves the outbox: sent, or (`dropped`) lost.
    fn uncount(&mut self, kind: Kind, sent: bool) {
        let counts = &mut self.counts[kind.index()];
        counts.queued -= 1;
        if sent {
            counts.sent += 1;
        } else if kind == Kind::Connect {
            // Connect messages are re-made at each connection; an unsent one is not a loss.
            counts.made -= 1;
        } else {
            counts.dropped += 1;
        }
    }

    /// Hands waiting messages to the client, highest lane first, while connected and the
    /// window has room. `submit` returns false when the client cannot take one now.
    pub fn pump(&mut self, mut submit: impl FnMut(&Message) -> bool) {
        if !self.connected {
            return;
        }
        while self.handed.len() < WINDOW {
            let Some(lane) = LANES
                .into_iter()
                .find(|&l| !self.lanes[l as usize].is_empty())
            else {
                return;
            };
            let Some(message) = self.lane(lane).pop_front() else {
                return;
            };
            if !submit(&message) {
                self.lane(lane).push_front(message);
                return;
            }
            self.handed.push_back(Handed {
                message,
                written: None,
            });
        }
    }

    /// rumqttc wrote a publish with this packet id (0 for QoS 0). Writes happen in hand-over
    /// order, so it is the oldest handed message not yet written.
    pub fn written(&mut self, pkid: u16) {
        let at_most_once = pkid == 0;
        let Some(index) = self.handed.iter().position(|h| {
            h.written.is_none() && (h.message.qos == QoS::AtMostOnce) == at_most_once
        }) else {
            log::debug!("publish {pkid} written but nothing handed over matches it");
            return;
        };
        if at_most_once {
            if let Some(done) = self.handed.remove(index) {
                self.uncount(done.message.kind, true);
            }
        } else {
            self.handed[index].written = Some(pkid);
        }
    }

    /// The broker acknowledged packet `pkid` (PUBACK for QoS 1, PUBCOMP for QoS 2).
    pub fn acknowledged(&mut self, pkid: u16) {
        match self.handed.iter().position(|h| h.written == Some(pkid)) {
            Some(index) => {
                if let Some(done) = self.handed.remove(index) {
                    self.uncount(done.message.kind, true);
                }
            }
            None => log::debug!("acknowledgement of {pkid}, which is not in flight"),
        }
    }

    /// Nothing waits and nothing is in flight.
    pub fn is_idle(&self) -> bool {
        self.handed.is_empty() && self.lanes.iter().all(VecDeque::is_empty)
    }

    pub fn counts(&self, kind: Kind) -> KindCounts {
        self.counts[kind.index()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(kind: Kind, n: u8) -> Message {
        Message {
            kind,
            topic: format!("t/{kind:?}"),
            payload: vec![n],
            qos: if kind == Kind::Faces {
                QoS::AtMostOnce
            } else {
                QoS::AtLeastOnce
            },
            retain: false,
        }
    }

    fn take(outbox: &mut Outbox, limit: usize) -> Vec<(Kind, u8)> {
        let mut taken = Vec::new();
        outbox.pump(|m| {
            if taken.len() == limit {
                return false;
            }
            taken.push((m.kind, m.payload[0]));
            true
        });
        taken
    }

    fn invariant_holds(outbox: &Outbox) {
        for kind in [Kind::Event, Kind::Faces, Kind::Response, Kind::Stats] {
            let c = outbox.counts(kind);
            assert_eq!(c.made, c.sent + c.dropped + c.queued, "{kind:?} {c:?}");
        }
    }

    #[test]
    fn while_disconnected_events_wait_and_faces_drop_oldest_first() {
        let mut outbox = Outbox::new(3, 2);
        for n in 0..5 {
            outbox.push(message(Kind::Event, n));
            outbox.push(message(Kind::Faces, n));
        }
        assert!(
            take(&mut outbox, 100).is_empty(),
            "nothing leaves unconnected"
        );
        let events = outbox.counts(Kind::Event);
        assert_eq!((events.made, events.dropped, events.queued), (5, 2, 3));
        let faces = outbox.counts(Kind::Faces);
        assert_eq!((faces.made, faces.dropped, faces.queued), (5, 3, 2));
        invariant_holds(&outbox);

        let connect = message(Kind::Connect, 9);
        outbox.connected(std::slice::from_ref(&connect));
        // The status first, then the newest events in order, then the newest faces.
        assert_eq!(
            take(&mut outbox, 100),
            vec![
                (Kind::Connect, 9),
                (Kind::Event, 2),
                (Kind::Event, 3),
                (Kind::Event, 4),
                (Kind::Faces, 3),
                (Kind::Faces, 4)
            ]
        );
        invariant_holds(&outbox);
    }

    #[test]
    fn unacknowledged_messages_return_in_order_after_a_disconnect() {
        let mut outbox = Outbox::new(100, 10);
        outbox.connected(&[]);
        for n in 0..4 {
            outbox.push(message(Kind::Event, n));
        }
        outbox.push(message(Kind::Faces, 0));
        assert_eq!(take(&mut outbox, 100).len(), 5);
        // Event 0 (pkid 1) and 1 (pkid 2) written, only event 0 acknowledged; the face and the
        // other events were still in rumqttc's channel when the connection dropped.
        outbox.written(1);
        outbox.written(2);
        outbox.acknowledged(1);
        assert_eq!(outbox.counts(Kind::Event).sent, 1);
        outbox.disconnected();
        invariant_holds(&outbox);
        assert_eq!(outbox.counts(Kind::Faces).queued, 1);
        outbox.push(message(Kind::Event, 4));
        outbox.connected(&[]);
        assert_eq!(
            take(&mut outbox, 100),
            vec![
                (Kind::Event, 1),
                (Kind::Event, 2),
                (Kind::Event, 3),
                (Kind::Event, 4),
                (Kind::Faces, 0)
            ]
        );
        for pkid in 1..=4 {
            outbox.written(pkid);
        }
        outbox.written(0);
        for pkid in [2, 1, 4, 3] {
            outbox.acknowledged(pkid);
        }
        assert!(outbox.is_idle());
        let events = outbox.counts(Kind::Event);
        assert_eq!((events.made, events.sent, events.dropped), (5, 5, 0));
        assert_eq!(outbox.counts(Kind::Faces).sent, 1);
    }

    #[test]
    fn hand_over_stops_at_the_window_and_when_the_client_refuses() {
        let mut outbox = Outbox::new(1000, 10);
        outbox.connected(&[]);
        for n in 0..100 {
            outbox.push(message(Kind::Event, n));
        }
        assert_eq!(take(&mut outbox, 10).len(), 10, "the client took 10");
        assert_eq!(take(&mut outbox, 100).len(), WINDOW - 10);
        assert!(take(&mut outbox, 100).is_empty(), "window full");
        outbox.written(1);
        outbox.acknowledged(1);
        assert_eq!(take(&mut outbox, 100), vec![(Kind::Event, WINDOW as u8)]);
        invariant_holds(&outbox);
    }

    #[test]
    fn connect_messages_are_not_repeated_after_reconnects() {
        let mut outbox = Outbox::new(10, 10);
        let connect = [message(Kind::Connect, 1)];
        outbox.connected(&connect);
        outbox.disconnected();
        outbox.connected(&connect);
        outbox.disconnected();
        outbox.connected(&connect);
        assert_eq!(take(&mut outbox, 100), vec![(Kind::Connect, 1)]);
        outbox.written(1);
        outbox.acknowledged(1);
        assert!(outbox.is_idle());
        assert_eq!(outbox.counts(Kind::Connect).made, 1);
    }
}
