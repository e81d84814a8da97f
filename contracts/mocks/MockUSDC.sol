// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @title MockUSDC
/// @notice A 6-decimal ERC-20 standing in for USDC on local chains. Anyone may mint, but only
///         on chain ids reserved for local development (31337 anvil/hardhat, 1337 geth dev):
///         deployed anywhere else, `mint` reverts, so a stray deployment cannot print money.
contract MockUSDC is ERC20 {
    error MintOnlyOnLocalChain(uint256 chainId);

    constructor() ERC20("USD Coin (mock)", "USDC") {}

    function decimals() public pure override returns (uint8) {
        return 6;
    }

    function mint(address to, uint256 amount) external {
        if (block.chainid != 31337 && block.chainid != 1337) revert MintOnlyOnLocalChain(block.chainid);
        _mint(to, amount);
    }
}
