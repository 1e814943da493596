// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {IArbitrable} from "./interfaces/IArbitrable.sol";
import {IArbitrator} from "./interfaces/IArbitrator.sol";
import {IJuryArbiter} from "./interfaces/IJuryArbiter.sol";
import {IMarket} from "./interfaces/IMarket.sol";

/// @title JuryArbiter
/// @notice ERC-792 arbitrator for one Market: a jury of the market's staked verifiers (other than
/// the two parties) drawn pseudo-randomly at dispute creation, commit-reveal voting with
/// deadlines, majority ruling, and the market's juror share split among the majority jurors.
/// @dev Randomness is block.prevrandao and the previous blockhash mixed with the dispute id:
/// a block proposer can bias it, and a challenger calling through a contract can simulate the
/// draw and revert until the jury suits it (see docs/contracts.md "Jury randomness").
contract JuryArbiter is IJuryArbiter, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    uint8 private constant RULING_WORKER = 1;
    uint8 private constant RULING_CHALLENGER = 2;
    uint8 private constant MAX_JURY_SIZE = 32;

    struct Dispute {
        address worker; // slot 0
        uint64 createdAt;
        uint8 numJurors;
        uint8 commits;
        uint8 reveals;
        address challenger; // slot 1
        uint64 commitDeadline;
        uint8 votesWorker;
        uint8 votesChallenger;
        bool resolved;
        uint8 ruling;
        uint64 revealDeadline; // slot 2
        uint256 jurorReward; // slot 3
    }

    struct Vote {
        bool isJuror;
        bool revealed;
        uint8 choice;
        bytes32 commitment;
    }

    IMarket private immutable _market;
    IERC20 private immutable _token;
    uint8 private immutable _jurySize;
    uint64 private immutable _commitPeriod;
    uint64 private immutable _revealPeriod;

    uint256 private _disputeCount;
    mapping(uint256 disputeId => Dispute) private _disputes;
    mapping(uint256 disputeId => address[]) private _jurors;
    mapping(uint256 disputeId => mapping(address juror => Vote)) private _votes;
    mapping(address juror => uint256) private _rewards;

    /// @param market_ The market this arbiter serves (deployed first; wire back with market.setArbiter).
    /// @param p Jury size (1..32) and phase lengths; commitPeriod + revealPeriod must be shorter
    /// than the market's disputeTimeout so a jury always gets to rule before the market times out.
    constructor(IMarket market_, JuryParams memory p) {
        if (address(market_) == address(0)) revert JuryInvalidParams("market is the zero address");
        if (p.jurySize == 0 || p.jurySize > MAX_JURY_SIZE) revert JuryInvalidParams("jurySize must be 1..32");
        if (p.commitPeriod == 0 || p.revealPeriod == 0) revert JuryInvalidParams("commit/reveal periods must be > 0");
        if (uint256(p.commitPeriod) + p.revealPeriod >= market_.params().disputeTimeout) {
            revert JuryInvalidParams("commitPeriod + revealPeriod must be < market disputeTimeout");
        }
        _market = market_;
        _token = market_.token();
        _jurySize = p.jurySize;
        _commitPeriod = p.commitPeriod;
        _revealPeriod = p.revealPeriod;
    }

    // ------------------------------------------------------------------ ERC-792

    /// @inheritdoc IArbitrator
    function createDispute(uint256 choices, bytes calldata extraData) external payable returns (uint256 disputeId) {
        if (msg.sender != address(_market)) revert JuryNotMarket(msg.sender);
        if (choices != 2) revert JuryInvalidChoices(choices);
        if (msg.value != 0) revert JuryFeeNotAccepted(msg.value);
        (address worker, address challenger) = abi.decode(extraData, (address, address));
        disputeId = ++_disputeCount;
        address[] memory jurors = _draw(disputeId, worker, challenger);
        uint64 commitDeadline = uint64(block.timestamp) + _commitPeriod;
        uint64 revealDeadline = commitDeadline + _revealPeriod;
        Dispute storage d = _disputes[disputeId];
        d.worker = worker;
        d.challenger = challenger;
        d.createdAt = uint64(block.timestamp);
        d.commitDeadline = commitDeadline;
        d.revealDeadline = revealDeadline;
        d.numJurors = uint8(jurors.length); // <= jurySize <= 32
        for (uint256 i; i < jurors.length; ++i) {
            _jurors[disputeId].push(jurors[i]);
            _votes[disputeId][jurors[i]].isJuror = true;
        }
        emit DisputeCreation(disputeId, IArbitrable(msg.sender));
        emit JurorsDrawn(disputeId, jurors, commitDeadline, revealDeadline);
    }

    /// @inheritdoc IArbitrator
    function arbitrationCost(bytes calldata) external pure returns (uint256) {
        return 0;
    }

    /// @inheritdoc IArbitrator
    function disputeStatus(uint256 disputeId) external view returns (DisputeStatus) {
        return _dispute(disputeId).resolved ? DisputeStatus.Solved : DisputeStatus.Waiting;
    }

    /// @inheritdoc IArbitrator
    function currentRuling(uint256 disputeId) external view returns (uint256) {
        Dispute storage d = _dispute(disputeId);
        return d.resolved ? d.ruling : _tally(d.votesWorker, d.votesChallenger);
    }

    // ------------------------------------------------------------------ voting

    /// @inheritdoc IJuryArbiter
    function commitVote(uint256 disputeId, bytes32 commitment) external {
        Dispute storage d = _dispute(disputeId);
        Vote storage v = _votes[disputeId][msg.sender];
        if (!v.isJuror) revert JuryNotJuror(disputeId, msg.sender);
        if (block.timestamp >= d.commitDeadline) {
            revert JuryCommitClosed(disputeId, d.commitDeadline, uint64(block.timestamp));
        }
        if (v.commitment != bytes32(0)) revert JuryAlreadyCommitted(disputeId, msg.sender);
        if (commitment == bytes32(0)) revert JuryZeroCommitment(); // 0 marks "not committed"
        v.commitment = commitment;
        ++d.commits;
        emit VoteCommitted(disputeId, msg.sender, commitment);
    }

    /// @inheritdoc IJuryArbiter
    function revealVote(uint256 disputeId, uint8 choice, bytes32 salt) external {
        Dispute storage d = _dispute(disputeId);
        Vote storage v = _votes[disputeId][msg.sender];
        if (!v.isJuror) revert JuryNotJuror(disputeId, msg.sender);
        if (v.commitment == bytes32(0)) revert JuryNotCommitted(disputeId, msg.sender);
        if (v.revealed) revert JuryAlreadyRevealed(disputeId, msg.sender);
        if (block.timestamp < d.commitDeadline && d.commits < d.numJurors) {
            revert JuryRevealNotOpen(disputeId, d.commitDeadline, uint64(block.timestamp));
        }
        if (block.timestamp >= d.revealDeadline) {
            revert JuryRevealClosed(disputeId, d.revealDeadline, uint64(block.timestamp));
        }
        if (choice != RULING_WORKER && choice != RULING_CHALLENGER) revert JuryInvalidChoice(choice);
        if (voteCommitment(disputeId, msg.sender, choice, salt) != v.commitment) {
            revert JuryCommitmentMismatch(disputeId, msg.sender);
        }
        v.revealed = true;
        v.choice = choice;
        ++d.reveals;
        if (choice == RULING_WORKER) ++d.votesWorker;
        else ++d.votesChallenger;
        emit VoteRevealed(disputeId, msg.sender, choice);
    }

    /// @inheritdoc IJuryArbiter
    function resolve(uint256 disputeId) external nonReentrant {
        Dispute storage d = _dispute(disputeId);
        if (d.resolved) revert JuryAlreadyResolved(disputeId);
        if (!_resolvable(d)) revert JuryNotResolvable(disputeId, d.revealDeadline, uint64(block.timestamp));
        uint8 ruling = _tally(d.votesWorker, d.votesChallenger);
        d.resolved = true;
        d.ruling = ruling;
        // The market is immutable and trusted; it sends the juror share to this contract.
        uint256 before = _token.balanceOf(address(this));
        _market.rule(disputeId, ruling);
        uint256 received = _token.balanceOf(address(this)) - before;
        d.jurorReward = received;
        emit JuryResolved(disputeId, ruling, d.votesWorker, d.votesChallenger, received);
        if (received != 0 && ruling != 0) _payMajority(disputeId, ruling, received);
    }

    /// @inheritdoc IJuryArbiter
    function withdrawReward() external nonReentrant {
        uint256 amount = _rewards[msg.sender];
        if (amount == 0) revert JuryNoReward(msg.sender);
        _rewards[msg.sender] = 0;
        emit RewardWithdrawn(msg.sender, amount);
        _token.safeTransfer(msg.sender, amount);
    }

    // ------------------------------------------------------------------ views

    /// @inheritdoc IJuryArbiter
    function market() external view returns (IMarket) {
        return _market;
    }

    /// @inheritdoc IJuryArbiter
    function params() external view returns (JuryParams memory) {
        return JuryParams({jurySize: _jurySize, commitPeriod: _commitPeriod, revealPeriod: _revealPeriod});
    }

    /// @inheritdoc IJuryArbiter
    function disputeCount() external view returns (uint256) {
        return _disputeCount;
    }

    /// @inheritdoc IJuryArbiter
    function getDispute(uint256 disputeId) external view returns (JuryDisputeView memory) {
        Dispute storage d = _dispute(disputeId);
        return JuryDisputeView({
            worker: d.worker,
            challenger: d.challenger,
            createdAt: d.createdAt,
            commitDeadline: d.commitDeadline,
            revealDeadline: d.revealDeadline,
            numJurors: d.numJurors,
            commits: d.commits,
            reveals: d.reveals,
            votesWorker: d.votesWorker,
            votesChallenger: d.votesChallenger,
            resolved: d.resolved,
            ruling: d.ruling,
            jurorReward: d.jurorReward
        });
    }

    /// @inheritdoc IJuryArbiter
    function jurorsOf(uint256 disputeId) external view returns (address[] memory) {
        _dispute(disputeId);
        return _jurors[disputeId];
    }

    /// @inheritdoc IJuryArbiter
    function voteOf(uint256 disputeId, address juror) external view returns (VoteView memory) {
        Vote storage v = _votes[disputeId][juror];
        return VoteView({commitment: v.commitment, choice: v.choice, revealed: v.revealed});
    }

    /// @inheritdoc IJuryArbiter
    function rewardOf(address juror) external view returns (uint256) {
        return _rewards[juror];
    }

    /// @inheritdoc IJuryArbiter
    function voteCommitment(uint256 disputeId, address juror, uint8 choice, bytes32 salt)
        public
        pure
        returns (bytes32)
    {
        return keccak256(abi.encode(disputeId, juror, choice, salt));
    }

    // ------------------------------------------------------------------ internal

    function _dispute(uint256 disputeId) private view returns (Dispute storage d) {
        d = _disputes[disputeId];
        if (d.createdAt == 0) revert JuryUnknownDispute(disputeId);
    }

    function _tally(uint8 votesWorker, uint8 votesChallenger) private pure returns (uint8) {
        if (votesChallenger > votesWorker) return RULING_CHALLENGER;
        if (votesWorker > votesChallenger) return RULING_WORKER;
        return 0; // tie, including no votes
    }

    /// @dev Resolvable when no juror was drawn, every juror revealed, the commit phase ended and
    /// every commit was revealed (covers "no commits"), or the reveal deadline passed.
    function _resolvable(Dispute storage d) private view returns (bool) {
        if (d.reveals == d.numJurors) return true; // includes numJurors == 0
        if (block.timestamp >= d.revealDeadline) return true;
        return block.timestamp >= d.commitDeadline && d.reveals == d.commits;
    }

    /// @dev Split `amount` equally among jurors who revealed `ruling`; the last one also gets the
    /// rounding remainder so the split is exact. Non-revealing jurors get nothing.
    function _payMajority(uint256 disputeId, uint8 ruling, uint256 amount) private {
        Dispute storage d = _disputes[disputeId];
        uint256 winners = ruling == RULING_WORKER ? d.votesWorker : d.votesChallenger; // > 0: ruling != 0
        uint256 share = amount / winners;
        uint256 paidJurors = 0;
        uint256 given = 0;
        address[] storage jurors = _jurors[disputeId];
        for (uint256 i; i < jurors.length; ++i) {
            Vote storage v = _votes[disputeId][jurors[i]];
            if (!v.revealed || v.choice != ruling) continue;
            ++paidJurors;
            // the last winner takes what is left, so the shares add up to `amount` exactly
            uint256 pay = paidJurors == winners ? amount - given : share;
            given += pay;
            _rewards[jurors[i]] += pay;
            emit JurorRewarded(disputeId, jurors[i], pay);
        }
    }

    /// @dev Draw up to jurySize distinct verifiers other than the parties: jurySize * 4 random
    /// probes, then (small pools) a scan from a random offset, which stops after at most
    /// jurySize + 2 + (already drawn) ineligible entries, so the cost is bounded.
    function _draw(uint256 disputeId, address worker, address challenger) private view returns (address[] memory) {
        uint256 n = _market.verifierCount();
        address[] memory picked = new address[](_jurySize);
        uint256 count;
        if (n != 0) {
            bytes32 seed = keccak256(
                abi.encode(
                    block.prevrandao,
                    blockhash(block.number - 1), // no transaction runs in block 0
                    address(this),
                    disputeId
                )
            );
            uint256 attempts = uint256(_jurySize) * 4;
            for (uint256 k; k < attempts && count < _jurySize; ++k) {
                address a = _market.verifierAt(uint256(keccak256(abi.encode(seed, k))) % n);
                if (_eligible(a, worker, challenger, picked, count)) picked[count++] = a;
            }
            uint256 start = uint256(seed) % n;
            for (uint256 i; i < n && count < _jurySize; ++i) {
                address a = _market.verifierAt((start + i) % n);
                if (_eligible(a, worker, challenger, picked, count)) picked[count++] = a;
            }
        }
        assembly ("memory-safe") {
            mstore(picked, count) // shrink to the number drawn (count <= jurySize)
        }
        return picked;
    }

    function _eligible(address a, address worker, address challenger, address[] memory picked, uint256 count)
        private
        pure
        returns (bool)
    {
        if (a == worker || a == challenger) return false;
        for (uint256 i; i < count; ++i) {
            if (picked[i] == a) return false;
        }
        return true;
    }
}
