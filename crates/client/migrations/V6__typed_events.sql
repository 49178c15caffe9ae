-- Issue 9: typed events. An event row's `vellum_client::ChatEvent` as JSON, sealed under the
-- row's own key like its text (so it is shredded with it). NULL for text messages and for
-- events written before this version, which read back as a notice of their text.
ALTER TABLE messages ADD COLUMN event_json BLOB;
