// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {EnumerableSet} from "@openzeppelin/contracts/utils/structs/EnumerableSet.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {IMarket} from "./interfaces/IMarket.sol";

/// @title MarketStaking
/// @notice The stake half of the market: stakes per (account, role), unbonding, the verifier
/// pool the jury is drawn from, slashing and dispute payout credits. `Market` adds jobs,
/// rounds and disputes on top.
/// @dev Stake of a role = active + unbonding; both are slashable. Slashing takes from active
/// first, then unbonding. An account is in the verifier pool iff its active role-2 stake is
/// >= minVerifierStake; every function that changes that stake re-syncs the pool.
abstract contract MarketStaking is IMarket, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;
    using EnumerableSet for EnumerableSet.AddressSet;

    uint8 internal constant ROLE_WORKER = 1;
    uint8 internal constant ROLE_VERIFIER = 2;
    uint256 internal constant BPS = 10_000;
    /// @notice Reason code in `Slashed` for a worker whose disputed training step was ruled faulty.
    bytes32 public constant SLASH_REASON_FAULTY_STEP = "faulty-training-step";

    struct StakeData {
        uint256 active;
        uint256 unbonding;
        uint64 unlockAt;
    }

    IERC20 internal immutable _token;
    uint256 internal immutable _minWorkerStake;
    uint256 internal immutable _minVerifierStake;
    uint256 internal immutable _challengeBond;
    uint16 internal immutable _slashBps;
    uint16 internal immutable _jurorShareBps;
    uint64 internal immutable _unbondingPeriod;
    uint64 internal immutable _disputeTimeout;

    mapping(address account => mapping(uint8 role => StakeData)) private _stakes;
    EnumerableSet.AddressSet private _verifiers;
    mapping(address account => uint256) private _openDisputes;
    mapping(address account => uint256) private _payouts;

    constructor(IERC20 token_, MarketParams memory p) {
        if (address(token_) == address(0)) revert MarketZeroAddress();
        if (p.minWorkerStake == 0) revert MarketInvalidParams("minWorkerStake must be > 0");
        if (p.minVerifierStake == 0) revert MarketInvalidParams("minVerifierStake must be > 0");
        if (p.challengeBond == 0) revert MarketInvalidParams("challengeBond must be > 0");
        if (p.slashBps > BPS) revert MarketInvalidParams("slashBps must be <= 10000");
        if (p.jurorShareBps > BPS) revert MarketInvalidParams("jurorShareBps must be <= 10000");
        if (p.unbondingPeriod == 0) revert MarketInvalidParams("unbondingPeriod must be > 0");
        if (p.disputeTimeout == 0) revert MarketInvalidParams("disputeTimeout must be > 0");
        _token = token_;
        _minWorkerStake = p.minWorkerStake;
        _minVerifierStake = p.minVerifierStake;
        _challengeBond = p.challengeBond;
        _slashBps = p.slashBps;
        _jurorShareBps = p.jurorShareBps;
        _unbondingPeriod = p.unbondingPeriod;
        _disputeTimeout = p.disputeTimeout;
    }

    // ------------------------------------------------------------------ stakes

    /// @inheritdoc IMarket
    function stake(uint8 role, uint256 amount) external nonReentrant {
        _checkRole(role);
        if (amount == 0) revert MarketZeroAmount();
        StakeData storage s = _stakes[msg.sender][role];
        s.active += amount;
        if (role == ROLE_VERIFIER) _syncVerifier(msg.sender, s.active);
        emit Staked(msg.sender, role, amount, s.active);
        _token.safeTransferFrom(msg.sender, address(this), amount);
    }

    /// @inheritdoc IMarket
    function requestUnstake(uint8 role, uint256 amount) external {
        _checkRole(role);
        if (amount == 0) revert MarketZeroAmount();
        StakeData storage s = _stakes[msg.sender][role];
        uint256 active = s.active;
        if (amount > active) revert MarketUnstakeTooLarge(msg.sender, role, active, amount);
        unchecked {
            s.active = active - amount; // amount <= active, checked above
        }
        s.unbonding += amount;
        uint64 unlockAt = uint64(block.timestamp) + _unbondingPeriod;
        s.unlockAt = unlockAt;
        if (role == ROLE_VERIFIER) _syncVerifier(msg.sender, s.active);
        emit UnstakeRequested(msg.sender, role, amount, s.unbonding, unlockAt);
    }

    /// @inheritdoc IMarket
    function withdrawStake(uint8 role) external nonReentrant {
        _checkRole(role);
        StakeData storage s = _stakes[msg.sender][role];
        uint256 amount = s.unbonding;
        if (amount == 0) revert MarketNothingUnbonding(msg.sender, role);
        if (block.timestamp < s.unlockAt) {
            revert MarketStakeLocked(msg.sender, role, s.unlockAt, uint64(block.timestamp));
        }
        uint256 open = _openDisputes[msg.sender];
        if (open != 0) revert MarketAccountInDispute(msg.sender, open);
        s.unbonding = 0;
        s.unlockAt = 0;
        emit StakeWithdrawn(msg.sender, role, amount);
        _token.safeTransfer(msg.sender, amount);
    }

    /// @inheritdoc IMarket
    function withdrawPayout() external nonReentrant {
        uint256 amount = _payouts[msg.sender];
        if (amount == 0) revert MarketNoPayout(msg.sender);
        _payouts[msg.sender] = 0;
        emit PayoutWithdrawn(msg.sender, amount);
        _token.safeTransfer(msg.sender, amount);
    }

    // ------------------------------------------------------------------ views

    /// @inheritdoc IMarket
    function token() external view returns (IERC20) {
        return _token;
    }

    /// @inheritdoc IMarket
    function params() external view returns (MarketParams memory) {
        return MarketParams({
            minWorkerStake: _minWorkerStake,
            minVerifierStake: _minVerifierStake,
            challengeBond: _challengeBond,
            slashBps: _slashBps,
            jurorShareBps: _jurorShareBps,
            unbondingPeriod: _unbondingPeriod,
            disputeTimeout: _disputeTimeout
        });
    }

    /// @inheritdoc IMarket
    function minStake(uint8 role) public view returns (uint256) {
        _checkRole(role);
        return role == ROLE_WORKER ? _minWorkerStake : _minVerifierStake;
    }

    /// @inheritdoc IMarket
    function getStake(address account, uint8 role) external view returns (StakeView memory) {
        _checkRole(role);
        StakeData storage s = _stakes[account][role];
        return StakeView({active: s.active, unbonding: s.unbonding, unlockAt: s.unlockAt});
    }

    /// @inheritdoc IMarket
    function openDisputesOf(address account) external view returns (uint256) {
        return _openDisputes[account];
    }

    /// @inheritdoc IMarket
    function payoutOf(address account) external view returns (uint256) {
        return _payouts[account];
    }

    /// @inheritdoc IMarket
    function verifierCount() external view returns (uint256) {
        return _verifiers.length();
    }

    /// @inheritdoc IMarket
    function verifierAt(uint256 index) external view returns (address) {
        return _verifiers.at(index);
    }

    /// @inheritdoc IMarket
    function isEligibleVerifier(address account) external view returns (bool) {
        return _verifiers.contains(account);
    }

    // ------------------------------------------------------------------ internal

    function _checkRole(uint8 role) internal pure {
        if (role != ROLE_WORKER && role != ROLE_VERIFIER) revert MarketInvalidRole(role);
    }

    /// @dev Active stake of `account` in `role`.
    function _activeStake(address account, uint8 role) internal view returns (uint256) {
        return _stakes[account][role].active;
    }

    function _syncVerifier(address account, uint256 active) private {
        if (active >= _minVerifierStake) _verifiers.add(account);
        else _verifiers.remove(account);
    }

    /// @dev Slash slashBps of the account's stake in `role` (active + unbonding), taking from
    /// active first. Never more than the stake: slashBps <= 10000 (constructor check).
    /// @return amount Tokens taken (0 when the account has no stake in the role).
    function _slash(address account, uint8 role, uint256 disputeId) internal returns (uint256 amount) {
        StakeData storage s = _stakes[account][role];
        uint256 active = s.active;
        uint256 unbonding = s.unbonding;
        amount = Math.mulDiv(active + unbonding, _slashBps, BPS);
        if (amount == 0) return 0;
        if (amount <= active) {
            unchecked {
                s.active = active - amount; // amount <= active
            }
        } else {
            s.active = 0;
            unchecked {
                s.unbonding = unbonding - (amount - active); // amount <= active + unbonding, amount > active
            }
        }
        if (role == ROLE_VERIFIER) _syncVerifier(account, s.active);
        emit Slashed(account, role, amount, disputeId, SLASH_REASON_FAULTY_STEP);
    }

    function _credit(address account, uint256 disputeId, uint256 amount) internal {
        if (amount == 0) return;
        _payouts[account] += amount;
        emit PayoutCredited(account, disputeId, amount);
    }

    function _enterDispute(address worker, address challenger) internal {
        ++_openDisputes[worker];
        ++_openDisputes[challenger];
    }

    function _leaveDispute(address worker, address challenger) internal {
        unchecked {
            // each was incremented by _enterDispute when this dispute opened
            --_openDisputes[worker];
            --_openDisputes[challenger];
        }
    }
}
