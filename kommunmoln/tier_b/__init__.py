"""Client-side helpers of use case 2 (tier B): the issuing CA, CSR signing, SoftHSM CSRs,
recorded control-plane responses for the offline demo. Not packaged into Lambda."""
