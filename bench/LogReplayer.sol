// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @title LogReplayer (benchmark and test only, never deployed on a real chain)
/// @notice Installed with anvil_setCode at the OpinionMarket / CreatorShares addresses, it emits the
///         logs its calldata describes, so a benchmark can put a million real, consistent events on
///         an anvil chain in seconds. Calldata: records of
///         [header word = ntopics << 32 | datalen][ntopics topic words][datalen bytes of data].
contract LogReplayer {
    fallback() external {
        assembly {
            let p := 0
            let end := calldatasize()
            for {} lt(p, end) {} {
                let h := calldataload(p)
                let n := shr(32, h)
                let len := and(h, 0xffffffff)
                let t := add(p, 32)
                let d := add(t, mul(n, 32))
                calldatacopy(0, d, len)
                switch n
                case 0 { log0(0, len) }
                case 1 { log1(0, len, calldataload(t)) }
                case 2 { log2(0, len, calldataload(t), calldataload(add(t, 32))) }
                case 3 { log3(0, len, calldataload(t), calldataload(add(t, 32)), calldataload(add(t, 64))) }
                default {
                    log4(0, len, calldataload(t), calldataload(add(t, 32)), calldataload(add(t, 64)), calldataload(add(t, 96)))
                }
                p := add(d, len)
            }
        }
    }
}
