"""GuessLyfe read API (Starlette, /v1) and live feed (websockets). See docs/api.md and docs/feed.md."""
