"""Everything beside prefect.yaml that running edulake as deployments needs.

`deployments.blocks` creates the Prefect blocks from environment variables,
`deployments.local` runs a local Prefect server + process worker with every deployment,
`deployments.smoke` checks that every flow and entrypoint imports (run at image build time).
"""
