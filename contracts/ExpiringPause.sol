// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @title ExpiringPause
/// @notice A pause that ends on its own: `_pause` stops what `whenNotPaused` guards for PAUSE_DURATION
///         at most; `_unpause` ends it sooner. The next pause may start PAUSE_COOLDOWN after one ends,
///         so one key can hold new money out for at most 3 days in every 4, never for good. Used only
///         on functions that take new money in, so a pause never blocks an exit (sells, claims,
///         refunds, liquidity withdrawal).
abstract contract ExpiringPause {
    uint256 public constant PAUSE_DURATION = 3 days;
    uint256 public constant PAUSE_COOLDOWN = 1 days;

    /// @dev 0 = never paused; the pause is in force while block.timestamp < pausedUntil, and once it
    ///      is over (expired, or ended early by _unpause) it holds when the pause ended.
    uint256 private _pausedUntil;

    event Paused(address account, uint256 until);
    event Unpaused(address account);

    error EnforcedPause(uint256 until);
    error ExpectedPause();
    /// @notice The last pause ended less than PAUSE_COOLDOWN ago; a new one may start at `from`.
    error PauseCooldown(uint256 from);

    modifier whenNotPaused() {
        uint256 until = _pausedUntil;
        if (block.timestamp < until) revert EnforcedPause(until);
        _;
    }

    function paused() public view returns (bool) {
        return block.timestamp < _pausedUntil;
    }

    /// @notice When the current pause ends by itself (0 or a past time: not paused; a past time is
    ///         when the last pause ended).
    function pausedUntil() external view returns (uint256) {
        return _pausedUntil;
    }

    function _pause() internal {
        uint256 until = _pausedUntil;
        if (block.timestamp < until) revert EnforcedPause(until);
        if (until != 0 && block.timestamp < until + PAUSE_COOLDOWN) revert PauseCooldown(until + PAUSE_COOLDOWN);
        until = block.timestamp + PAUSE_DURATION;
        _pausedUntil = until;
        emit Paused(msg.sender, until);
    }

    function _unpause() internal {
        if (!paused()) revert ExpectedPause();
        _pausedUntil = block.timestamp; // ended now: the cooldown counts from here
        emit Unpaused(msg.sender);
    }
}
