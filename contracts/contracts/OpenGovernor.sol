// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {Governor} from "@openzeppelin/contracts/governance/Governor.sol";
import {GovernorSettings} from "@openzeppelin/contracts/governance/extensions/GovernorSettings.sol";
import {GovernorCountingSimple} from "@openzeppelin/contracts/governance/extensions/GovernorCountingSimple.sol";
import {GovernorVotes} from "@openzeppelin/contracts/governance/extensions/GovernorVotes.sol";
import {GovernorVotesQuorumFraction} from
    "@openzeppelin/contracts/governance/extensions/GovernorVotesQuorumFraction.sol";
import {GovernorTimelockControl} from "@openzeppelin/contracts/governance/extensions/GovernorTimelockControl.sol";
import {GovernorProposalGuardian} from "@openzeppelin/contracts/governance/extensions/GovernorProposalGuardian.sol";
import {TimelockController} from "@openzeppelin/contracts/governance/TimelockController.sol";
import {IVotes} from "@openzeppelin/contracts/governance/utils/IVotes.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";

/// @notice Where forfeited proposal deposits go: the platform treasury (Staking's, so there is one treasury).
interface ITreasurySource {
    function treasury() external view returns (address);
}

/// @title OpenLedger governance: OPEN holders' votes, executed through the timelock
/// @notice OpenZeppelin's Governor (settings, simple counting, ERC20Votes of OPEN, quorum as a fraction of the
///         supply, TimelockController execution, a proposal guardian), plus two things of our own:
///
///         - **Proposal staking.** Proposing locks `proposalDeposit` OPEN, taken from the proposer. Anyone may
///           settle it once the outcome is known (`settleDeposit`): it goes back to the proposer when the
///           proposal was executed, defeated with a quorum of participation (for + against + abstain),
///           cancelled by the proposer before voting started, or stuck in the queue
///           `DEPOSIT_RELEASE_AFTER_ETA` past its execution time (its calls keep reverting); it goes to the
///           treasury when the proposal was defeated without that quorum (too few cared to vote either way:
///           spam) or was cancelled by the guardian (abuse). ARCHITECTURE.md explains these rules.
///         - **Floors.** Governance cannot shorten the voting period below `minVotingPeriod` nor lower the quorum
///           below `minQuorumNumerator` percent of the supply (both fixed at deployment): the time holders have
///           to notice a proposal, and how many must take part, protect everyone.
///
///         The guardian (`proposalGuardian`, meant to be a multisig) may cancel a proposal that is still live
///         (pending, active, succeeded or queued): a veto against abuse, which forfeits the deposit. It cannot
///         propose, vote for others, execute, or move anything.
contract OpenGovernor is
    Governor,
    GovernorSettings,
    GovernorCountingSimple,
    GovernorVotes,
    GovernorVotesQuorumFraction,
    GovernorTimelockControl,
    GovernorProposalGuardian
{
    using SafeERC20 for IERC20;

    /// @notice How long past its ETA a queued proposal that was never executed keeps its deposit locked.
    uint256 public constant DEPOSIT_RELEASE_AFTER_ETA = 14 days;

    struct Config {
        uint48 votingDelay;
        uint32 votingPeriod;
        uint256 proposalThreshold;
        uint256 quorumNumerator;
        uint256 proposalDeposit;
        address guardian;
        uint32 minVotingPeriod;
        uint256 minQuorumNumerator;
    }

    struct Deposit {
        address proposer;
        uint96 amount;
        bool settled;
        bool guardianCanceled;
    }

    ITreasurySource public immutable treasurySource;
    uint256 public immutable minVotingPeriod;
    uint256 public immutable minQuorumNumerator;
    /// @notice OPEN locked by each new proposal.
    uint256 public proposalDeposit;

    mapping(uint256 proposalId => Deposit deposit) private _deposits;

    event ProposalDepositSet(uint256 amount);
    event DepositLocked(uint256 indexed proposalId, address indexed proposer, uint256 amount);
    event DepositReturned(uint256 indexed proposalId, address indexed proposer, uint256 amount);
    event DepositForfeited(uint256 indexed proposalId, address indexed treasury, uint256 amount);

    error ZeroAddress();
    error VotingPeriodBelowFloor(uint256 period, uint256 floor);
    error QuorumBelowFloor(uint256 numerator, uint256 floor);
    error DepositTooLarge(uint256 amount);
    error NoDeposit(uint256 proposalId);
    error DepositStillLocked(uint256 proposalId, ProposalState state);
    error GuardianCannotCancel(uint256 proposalId, ProposalState state);

    constructor(IVotes token_, TimelockController timelock_, ITreasurySource treasurySource_, Config memory c)
        Governor("OpenLedger Governor")
        GovernorSettings(c.votingDelay, c.votingPeriod, c.proposalThreshold)
        GovernorVotes(token_)
        GovernorVotesQuorumFraction(c.quorumNumerator)
        GovernorTimelockControl(timelock_)
    {
        if (address(treasurySource_) == address(0)) revert ZeroAddress();
        treasurySource = treasurySource_;
        minVotingPeriod = c.minVotingPeriod;
        minQuorumNumerator = c.minQuorumNumerator;
        // The base constructors set these before the floors existed: check them now.
        if (c.votingPeriod < c.minVotingPeriod) revert VotingPeriodBelowFloor(c.votingPeriod, c.minVotingPeriod);
        if (c.quorumNumerator < c.minQuorumNumerator) {
            revert QuorumBelowFloor(c.quorumNumerator, c.minQuorumNumerator);
        }
        _setProposalDeposit(c.proposalDeposit);
        _setProposalGuardian(c.guardian);
    }

    // ---------------------------------------------------------------- proposal staking

    /// @notice Set the deposit for new proposals (through governance only). Existing deposits keep their amount.
    function setProposalDeposit(uint256 amount) external onlyGovernance {
        _setProposalDeposit(amount);
    }

    function depositOf(uint256 proposalId) external view returns (Deposit memory) {
        return _deposits[proposalId];
    }

    /// @notice Return or forfeit a proposal's deposit once its outcome is known. Anyone may call it.
    /// @return returned true when the proposer got it back, false when it went to the treasury.
    function settleDeposit(uint256 proposalId) external returns (bool returned) {
        Deposit storage d = _deposits[proposalId];
        uint256 amount = d.amount;
        if (amount == 0 || d.settled) revert NoDeposit(proposalId);
        ProposalState s = state(proposalId);
        if (s == ProposalState.Executed || s == ProposalState.Expired) {
            returned = true;
        } else if (s == ProposalState.Defeated) {
            returned = participationReached(proposalId);
        } else if (s == ProposalState.Canceled) {
            returned = !d.guardianCanceled;
        } else if (
            s == ProposalState.Queued && block.timestamp >= proposalEta(proposalId) + DEPOSIT_RELEASE_AFTER_ETA
        ) {
            returned = true;
        } else {
            revert DepositStillLocked(proposalId, s);
        }
        d.settled = true;
        IERC20 open = IERC20(address(token()));
        if (returned) {
            emit DepositReturned(proposalId, d.proposer, amount);
            open.safeTransfer(d.proposer, amount);
        } else {
            address treasury = treasurySource.treasury();
            emit DepositForfeited(proposalId, treasury, amount);
            open.safeTransfer(treasury, amount);
        }
    }

    /// @notice Whether the votes cast on a proposal — for, against AND abstain — reach the quorum. (OpenZeppelin's
    ///         quorum for *passing* counts for + abstain only; a proposal many holders voted down was not spam.)
    function participationReached(uint256 proposalId) public view returns (bool) {
        (uint256 against, uint256 forVotes, uint256 abstain) = proposalVotes(proposalId);
        return against + forVotes + abstain >= quorum(proposalSnapshot(proposalId));
    }

    /// @inheritdoc Governor
    /// @dev The guardian may only cancel a live proposal (not a defeated one: that would take a deposit the
    ///      rules return); a guardian cancel forfeits the deposit.
    function cancel(address[] memory targets, uint256[] memory values, bytes[] memory calldatas, bytes32 descriptionHash)
        public
        override
        returns (uint256)
    {
        uint256 proposalId = getProposalId(targets, values, calldatas, descriptionHash);
        address caller = _msgSender();
        if (caller == proposalGuardian() && caller != proposalProposer(proposalId)) {
            ProposalState s = state(proposalId);
            if (
                s != ProposalState.Pending && s != ProposalState.Active && s != ProposalState.Succeeded
                    && s != ProposalState.Queued
            ) revert GuardianCannotCancel(proposalId, s);
            _deposits[proposalId].guardianCanceled = true;
        }
        return super.cancel(targets, values, calldatas, descriptionHash);
    }

    /// @dev Takes the deposit from the proposer (who must have approved this contract for it).
    function _propose(
        address[] memory targets,
        uint256[] memory values,
        bytes[] memory calldatas,
        string memory description,
        address proposer
    ) internal override returns (uint256 proposalId) {
        proposalId = super._propose(targets, values, calldatas, description, proposer);
        uint256 amount = proposalDeposit;
        if (amount != 0) {
            _deposits[proposalId] = Deposit(proposer, uint96(amount), false, false);
            emit DepositLocked(proposalId, proposer, amount);
            IERC20(address(token())).safeTransferFrom(proposer, address(this), amount);
        }
    }

    function _setProposalDeposit(uint256 amount) private {
        if (amount > type(uint96).max) revert DepositTooLarge(amount);
        proposalDeposit = amount;
        emit ProposalDepositSet(amount);
    }

    // ---------------------------------------------------------------- floors

    function _setVotingPeriod(uint32 newVotingPeriod) internal override {
        // 0 during construction (immutables not set yet); the constructor checks the initial value itself.
        uint256 floor = minVotingPeriod;
        if (newVotingPeriod < floor) revert VotingPeriodBelowFloor(newVotingPeriod, floor);
        super._setVotingPeriod(newVotingPeriod);
    }

    function _updateQuorumNumerator(uint256 newQuorumNumerator) internal override {
        uint256 floor = minQuorumNumerator;
        if (newQuorumNumerator < floor) revert QuorumBelowFloor(newQuorumNumerator, floor);
        super._updateQuorumNumerator(newQuorumNumerator);
    }

    // ---------------------------------------------------------------- overrides required by Solidity

    function votingDelay() public view override(Governor, GovernorSettings) returns (uint256) {
        return super.votingDelay();
    }

    function votingPeriod() public view override(Governor, GovernorSettings) returns (uint256) {
        return super.votingPeriod();
    }

    function proposalThreshold() public view override(Governor, GovernorSettings) returns (uint256) {
        return super.proposalThreshold();
    }

    function quorum(uint256 timepoint) public view override(Governor, GovernorVotesQuorumFraction) returns (uint256) {
        return super.quorum(timepoint);
    }

    function state(uint256 proposalId)
        public
        view
        override(Governor, GovernorTimelockControl)
        returns (ProposalState)
    {
        return super.state(proposalId);
    }

    function proposalNeedsQueuing(uint256 proposalId)
        public
        view
        override(Governor, GovernorTimelockControl)
        returns (bool)
    {
        return super.proposalNeedsQueuing(proposalId);
    }

    function _validateCancel(uint256 proposalId, address caller)
        internal
        view
        override(Governor, GovernorProposalGuardian)
        returns (bool)
    {
        return super._validateCancel(proposalId, caller);
    }

    function _queueOperations(
        uint256 proposalId,
        address[] memory targets,
        uint256[] memory values,
        bytes[] memory calldatas,
        bytes32 descriptionHash
    ) internal override(Governor, GovernorTimelockControl) returns (uint48) {
        return super._queueOperations(proposalId, targets, values, calldatas, descriptionHash);
    }

    function _executeOperations(
        uint256 proposalId,
        address[] memory targets,
        uint256[] memory values,
        bytes[] memory calldatas,
        bytes32 descriptionHash
    ) internal override(Governor, GovernorTimelockControl) {
        super._executeOperations(proposalId, targets, values, calldatas, descriptionHash);
    }

    function _cancel(
        address[] memory targets,
        uint256[] memory values,
        bytes[] memory calldatas,
        bytes32 descriptionHash
    ) internal override(Governor, GovernorTimelockControl) returns (uint256) {
        return super._cancel(targets, values, calldatas, descriptionHash);
    }

    function _executor() internal view override(Governor, GovernorTimelockControl) returns (address) {
        return super._executor();
    }
}
