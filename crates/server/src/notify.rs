use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::watch;

/// Wakes a device's open WebSocket when something is appended for it.
#[derive(Default)]
pub struct Notifier {
    channels: Mutex<HashMap<String, watch::Sender<u64>>>,
}

impl Notifier {
    pub fn subscribe(&self, device_id: &str) -> watch::Receiver<u64> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        channels
            .entry(device_id.to_owned())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    pub fn wake<'a>(&self, devices: impl IntoIterator<Item = &'a String>) {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        for device in devices {
            if let Some(sender) = channels.get(device) {
                sender.send_modify(|n| *n += 1);
            }
        }
        channels.retain(|_, sender| sender.receiver_count() > 0);
    }

    /// Wakes every open WebSocket: for rare org-wide changes (a legal hold placed or
    /// released), which any chat may show.
    pub fn wake_all(&self) {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        channels.retain(|_, sender| sender.receiver_count() > 0);
        for sender in channels.values() {
            sender.send_modify(|n| *n += 1);
        }
    }
}
