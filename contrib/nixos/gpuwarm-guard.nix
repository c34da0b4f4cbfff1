# NixOS module: run `gpuwarm guard` as ExecCondition= of nvidia-persistenced.
#
# On a switch that updates the NVIDIA driver without a reboot, the old kernel
# module stays loaded, nvidia-persistenced cannot start ("NVRM: API mismatch"),
# the unit fails and deploy-rs rolls the whole system back. With this module
# the unit is skipped instead (inactive, not failed), the switch completes, and
# the journal says that a reboot finishes the driver update.
#
# Usage, in a configuration that already has hardware.nvidia.nvidiaPersistenced = true:
#   imports = [ ./gpuwarm-guard.nix ];
#   services.gpuwarm-guard = { enable = true; package = pkgs.gpuwarm; };
{ config, lib, pkgs, ... }:

let
  cfg = config.services.gpuwarm-guard;
  nvidia = config.hardware.nvidia.package;
  guardArgs = [
    "guard"
    # The user-space driver of the new generation: what must match the loaded module.
    "--nvml" "${nvidia}/lib/libnvidia-ml.so.1"
    "--daemon" "${nvidia.persistenced}/bin/nvidia-persistenced"
  ] ++ lib.optionals (cfg.user != null) [ "--user" cfg.user ];
in
{
  options.services.gpuwarm-guard = {
    enable = lib.mkEnableOption "gpuwarm guard as the ExecCondition of nvidia-persistenced";

    package = lib.mkOption {
      type = lib.types.package;
      description = "The package providing bin/gpuwarm.";
    };

    user = lib.mkOption {
      type = lib.types.nullOr lib.types.str;
      default = null;
      example = "nvidia-persistenced";
      description = "The daemon's user, when it runs with --user: the guard checks it can open /dev/nvidia*.";
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = [
      {
        assertion = config.hardware.nvidia.nvidiaPersistenced;
        message = "services.gpuwarm-guard guards nvidia-persistenced: set hardware.nvidia.nvidiaPersistenced = true.";
      }
    ];

    systemd.services.nvidia-persistenced.serviceConfig.ExecCondition =
      "${cfg.package}/bin/gpuwarm ${lib.escapeShellArgs guardArgs}";
  };
}
