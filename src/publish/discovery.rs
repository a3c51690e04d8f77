//! Home Assistant MQTT discovery: retained configs under `<prefix>/sensor/<node>/<object>/config`
//! that make face count, last recognised identity and attention (faces looking at the camera)
//! appear as sensors of one device, available while `status` says `online`.

use serde_json::{json, Value};

use super::Topics;

/// One sensor: object id, name, state topic, value template, unit.
struct Sensor<'a> {
    object: &'a str,
    name: &'a str,
    state_topic: &'a str,
    template: &'a str,
    unit: Option<&'a str>,
}

/// (topic, payload) of each discovery config.
pub fn configs(ha_prefix: &str, device: &str, topics: &Topics) -> Vec<(String, Value)> {
    // The node id may hold only [a-zA-Z0-9_-]; device ids may also hold '.'.
    let node = format!("facecast_{}", device.replace('.', "_"));
    let sensors = [
        Sensor {
            object: "faces",
            name: "Faces",
            state_topic: &topics.faces,
            template: "{{ value_json.faces | count }}",
            unit: Some("faces"),
        },
        Sensor {
            object: "last_identity",
            name: "Last recognised identity",
            state_topic: &topics.events,
            // Only identity events change it; other events keep the current state.
            template: "{{ value_json.name if value_json.t == 'identity' else this.state }}",
            unit: None,
        },
        Sensor {
            object: "attention",
            name: "Faces attending",
            state_topic: &topics.faces,
            // Faces whose gaze is within the attention cone (`att`, with [analysis] enabled).
            template: "{{ value_json.faces | selectattr('att', 'defined') | selectattr('att') \
                       | list | count }}",
            unit: Some("faces"),
        },
    ];
    sensors
        .iter()
        .map(|sensor| {
            let mut config = json!({
                "name": sensor.name,
                "unique_id": format!("{node}_{}", sensor.object),
                "state_topic": sensor.state_topic,
                "value_template": sensor.template,
                "availability_topic": topics.status,
                "availability_template": "{{ value_json.state }}",
                "payload_available": "online",
                "payload_not_available": "offline",
                "device": {
                    "identifiers": [node],
                    "name": format!("facecast {device}"),
                    "manufacturer": "facecast",
                    "sw_version": env!("CARGO_PKG_VERSION"),
                },
            });
            if let Some(unit) = sensor.unit {
                config["unit_of_measurement"] = unit.into();
                config["state_class"] = "measurement".into();
            }
            (
                format!("{ha_prefix}/sensor/{node}/{}/config", sensor.object),
                config,
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_device_three_sensors_on_the_device_topics() {
        let topics = Topics::new("facecast", "lobby.1");
        let configs = configs("homeassistant", "lobby.1", &topics);
        let names: Vec<&str> = configs.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(
            names,
            [
                "homeassistant/sensor/facecast_lobby_1/faces/config",
                "homeassistant/sensor/facecast_lobby_1/last_identity/config",
                "homeassistant/sensor/facecast_lobby_1/attention/config"
            ]
        );
        for (_, config) in &configs {
            assert_eq!(config["availability_topic"], "facecast/lobby.1/status");
            assert_eq!(config["device"]["identifiers"][0], "facecast_lobby_1");
        }
        assert_eq!(configs[0].1["state_topic"], "facecast/lobby.1/faces");
        assert_eq!(configs[1].1["state_topic"], "facecast/lobby.1/events");
    }
}
