"""The indexer: tails OpinionMarket and CreatorShares events into PostgreSQL."""
