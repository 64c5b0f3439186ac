// What the Worker hands to the container.

/** The virtual host name the container sends its commands to (outboundByHost). */
export const COMMAND_HOST = "containerflare.command";

/** Worker vars passed on to the container process when set. */
export const FORWARDED_VARS = [
  "CONTAINERFLARE_WORKER",
  "CONTAINERFLARE_METADATA_SECRET",
  "CONTAINERFLARE_LOG_LEVEL",
  "CONTAINERFLARE_LOG_FORMAT",
];

/**
 * The container's environment (the Container class's `envVars`): the command channel
 * pointed at the Worker's command host, and the Worker vars the runtime reads.  Values
 * are strings; unset ones are left out.
 */
export function containerEnv(env) {
  const vars = {
    CF_CMD_ENDPOINT: `http://${COMMAND_HOST}/`,
    CONTAINERFLARE_PLATFORM: "cloudflare",
  };
  for (const name of FORWARDED_VARS) {
    const value = env?.[name];
    if (typeof value === "string" && value !== "") vars[name] = value;
  }
  return vars;
}
