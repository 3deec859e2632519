"""Time: timing and time-course readers, annotation sets (BIDS events), and temporal decoding against them."""
