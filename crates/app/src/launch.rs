//! Opening the window: Chromium or Chrome in app mode over a dedicated profile inside the
//! device's directory, else the default browser with a warning.
