-- Issue 10: a text message's reply, mentions, attachments and edit time
-- (`vellum_client::MessageExtra` as JSON), sealed under the row's own key like its text, so
-- it is shredded with it. NULL when there is nothing beyond the text, and for rows from before.
ALTER TABLE messages ADD COLUMN extra_json BLOB;
