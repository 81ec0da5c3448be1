/**
 * How-to and troubleshooting steps per kind of device. A category's steps are the same shape for
 * all its products but quote each product's own buttons, hold times, app and light colour, so two
 * products rarely share a fact.
 *
 * In the step text, the part in [brackets] is the checkable fact: the key action an answer must
 * contain. Keep facts free of `<`, `>`, `&` and quotes so HTML noise can never be confused with them.
 */
import type { Category, HowToTopic, Procedure, ProductEntry, Symptom } from './catalog';

interface Support {
  howTo: Partial<Record<HowToTopic, Procedure>>;
  troubleshooting: Partial<Record<Symptom, Procedure>>;
}

/** Splits 'before [fact] after' into the step text without brackets and the fact. */
export function procedure(marked: string): Procedure {
  const match = /\[([^\]]+)\]/.exec(marked);
  if (!match?.[1]) throw new Error(`procedure has no [fact]: ${marked}`);
  return { steps: marked.replace(/[[\]]/g, ''), fact: match[1] };
}

const hold = (keys: string, seconds: number) => `hold the ${keys} for ${seconds} seconds`;

function audioSupport({ name, category, controls: c }: ProductEntry): Support {
  const isEarbuds = category === 'earbuds';
  return {
    howTo: {
      reset: procedure(`switch it off, then [${hold(c.resetKeys, c.resetSeconds)}] until the light blinks ${c.light}`),
      pair: isEarbuds
        ? procedure(
            `with both earbuds in the case and the lid open, [${hold('case button', 3)}] until the light pulses white, then choose ${name} in your phone's Bluetooth settings`,
          )
        : procedure(
            `[${hold('Bluetooth button', c.resetSeconds > 6 ? 4 : 2)}] until the light flashes blue, then pick ${name} from the Bluetooth list on your phone`,
          ),
      updateFirmware: procedure(
        `connect it to your phone, [open the ${c.app} app and tap Device, then Firmware Update], and keep it within one metre until the progress bar finishes`,
      ),
      factoryReset: procedure(
        `[${hold(c.resetKeys, c.factorySeconds)}] until the light flashes ${c.light} three times, then remove ${name} from your phone's Bluetooth list before pairing again`,
      ),
    },
    troubleshooting: {
      wontTurnOn: procedure(
        `[charge it for ${c.chargeMinutes} minutes with the supplied USB-C cable], then press and hold the power button for 3 seconds`,
      ),
      bluetoothDrops: procedure(
        `[forget the device in the Bluetooth settings of your phone and pair it again], and keep it within 10 metres with no walls in between`,
      ),
      ...(isEarbuds
        ? {
            wontCharge: procedure(
              `[clean the charging contacts in the case with a dry cotton swab], then seat each earbud until the light turns ${c.light}`,
            ),
            batteryDrain: procedure(
              `[turn off active noise cancelling in the ${c.app} app] when you do not need it, and store the earbuds in the closed case`,
            ),
          }
        : {
            noSound: procedure(
              `check the volume on both devices, then [turn off Multipoint in the ${c.app} app] so only one source is connected`,
            ),
          }),
    },
  };
}

function watchSupport({ controls: c }: ProductEntry): Support {
  return {
    howTo: {
      reset: procedure(`[${hold(c.resetKeys, c.resetSeconds)}] until the logo appears; your data stays on the watch`),
      pair: procedure(`install the ${c.app} app, then [scan the code on the watch face with the ${c.app} app] and follow the prompts`),
      updateFirmware: procedure(`put the watch on its charger and [open the ${c.app} app, then tap Watch, then Software Update]`),
      factoryReset: procedure(
        `[${hold(c.resetKeys, c.factorySeconds)}] and choose Erase All Data on the screen, then unpair it in the ${c.app} app`,
      ),
    },
    troubleshooting: {
      wontTurnOn: procedure(
        `[leave it on the magnetic charger for ${c.chargeMinutes} minutes], making sure the charger light shows ${c.light}`,
      ),
      batteryDrain: procedure(
        `[turn off the always-on display in the ${c.app} app] and take heart-rate readings every 10 minutes instead of continuously`,
      ),
      wontCharge: procedure(
        `[wipe the charging pins on the back with a damp cloth], let them dry, and seat the watch on the charger again`,
      ),
    },
  };
}

function tvSupport({ controls: c }: ProductEntry): Support {
  return {
    howTo: {
      reset: procedure(`[${hold(c.resetKeys, c.resetSeconds)}] until the screen goes dark and the TV restarts`),
      updateFirmware: procedure(`with the TV online, [open Settings, then Support, then ${c.app} Update, and choose Update Now]`),
      factoryReset: procedure(
        `with the TV on, [${hold(c.resetKeys, c.factorySeconds)}] until the service menu appears, then choose Factory Reset and enter the PIN 0000`,
      ),
    },
    troubleshooting: {
      wontTurnOn: procedure(
        `[unplug the power cord for 60 seconds], then plug it straight into a wall socket and press the power button on the TV itself`,
      ),
      screenFlicker: procedure(`[turn off Energy Saving under Settings, then Picture], and try an HDMI cable rated for 48 Gbps`),
      wifiDrops: procedure(`[switch the TV to your 5 GHz network] and keep the router within line of sight, or use the Ethernet port`),
      noSound: procedure(`[set Sound Output to TV Speaker under Settings, then Sound], and check that the TV is not muted`),
    },
  };
}

function monitorSupport({ controls: c }: ProductEntry): Support {
  return {
    howTo: {
      reset: procedure(`[${hold(c.resetKeys, c.resetSeconds)}] until the power light blinks ${c.light}`),
      updateFirmware: procedure(
        `[install the ${c.app} utility on your computer, connect the monitor over USB-C, and click Update], then leave it on until it restarts`,
      ),
      factoryReset: procedure(
        `[open the on-screen menu with the joystick and choose System, then Factory Reset]; picture settings go back to default`,
      ),
    },
    troubleshooting: {
      wontTurnOn: procedure(`[check that the power brick light is ${c.light}], then hold the power button for ${c.resetSeconds} seconds`),
      screenFlicker: procedure(
        `[lower the refresh rate to 60 Hz in the display settings of your computer], then raise it again using a certified DisplayPort cable`,
      ),
    },
  };
}

function mobileSupport({ category, controls: c }: ProductEntry): Support {
  const device = category === 'phones' ? 'phone' : 'tablet';
  return {
    howTo: {
      reset: procedure(`[${hold(c.resetKeys, c.resetSeconds)}] until the screen goes black and the logo appears`),
      updateFirmware: procedure(`connect to Wi-Fi and [open Settings, then System, then ${c.app} Update, and tap Install]`),
      factoryReset: procedure(
        `with the ${device} switched off, [${hold(c.resetKeys, c.factorySeconds)}] to open recovery mode and choose Wipe Data`,
      ),
    },
    troubleshooting: {
      wontTurnOn: procedure(
        `[charge it for ${c.chargeMinutes} minutes with a charger of at least 20 W], then hold the power button for ${c.resetSeconds} seconds`,
      ),
      batteryDrain: procedure(`[open Settings, then Battery, and turn on Adaptive Battery], then check which apps use the most power`),
      ...(category === 'phones'
        ? {
            overheating: procedure(
              `[take it out of its case and close apps running in the background], and avoid charging it in direct sunlight`,
            ),
          }
        : { wifiDrops: procedure(`[forget the network under Settings, then Wi-Fi, and join it again], and turn off Wi-Fi power saving`) }),
    },
  };
}

function laptopSupport({ controls: c }: ProductEntry): Support {
  return {
    howTo: {
      reset: procedure(`[${hold(c.resetKeys, c.resetSeconds)}] until the laptop switches off, then press power again`),
      updateFirmware: procedure(`with the charger connected, [open the ${c.app} app and choose BIOS and Firmware, then Install]`),
      factoryReset: procedure(`[open the ${c.app} app and choose Recovery, then Restore Factory Image], keeping the charger connected`),
    },
    troubleshooting: {
      wontTurnOn: procedure(
        `[connect the original charger for ${c.chargeMinutes} minutes until the charging light turns ${c.light}], then hold the power button for ${c.resetSeconds} seconds`,
      ),
      overheating: procedure(`[keep the vents clear and switch to Balanced mode in the ${c.app} app], and use it on a hard, flat surface`),
      wifiDrops: procedure(`[update the wireless driver in the ${c.app} app], then restart your router`),
    },
  };
}

function keyboardSupport({ name, controls: c }: ProductEntry): Support {
  return {
    howTo: {
      reset: procedure(`[${hold(c.resetKeys, c.resetSeconds)}] until the caps-lock light blinks ${c.light}`),
      pair: procedure(
        `[hold Fn and 1 for ${Math.max(3, c.resetSeconds - 2)} seconds] to put channel 1 into pairing mode, then choose ${name} in your Bluetooth settings`,
      ),
      updateFirmware: procedure(
        `[connect it with the USB-C cable and run the ${c.app} updater], leaving the cable in until the lights stop flashing`,
      ),
      factoryReset: procedure(`[${hold(c.resetKeys, c.factorySeconds)}] until all lights flash ${c.light} three times`),
    },
    troubleshooting: {
      bluetoothDrops: procedure(`[move the USB receiver to a front port or use the extension adapter] so it is closer to the keyboard`),
      wontTurnOn: procedure(`[charge it for ${c.chargeMinutes} minutes with the power switch on], then press any key`),
      batteryDrain: procedure(`[turn the backlight down to level 2 in the ${c.app} app] and let it sleep after 5 minutes`),
    },
  };
}

function routerSupport({ controls: c }: ProductEntry): Support {
  return {
    howTo: {
      reset: procedure(`[${hold(c.resetKeys, c.resetSeconds)}] until the light turns ${c.light}; your settings are kept`),
      pair: procedure(`[open the ${c.app} app and scan the QR code on the bottom label], then follow the setup steps`),
      updateFirmware: procedure(`[open the ${c.app} app, go to Settings, then Firmware, and tap Update]; the router restarts by itself`),
      factoryReset: procedure(
        `[press the recessed reset button with a paperclip for ${c.factorySeconds} seconds] until the light flashes ${c.light}`,
      ),
    },
    troubleshooting: {
      wifiDrops: procedure(`[change the 2.4 GHz channel to 1, 6 or 11 in the ${c.app} app] and keep the router off the floor`),
      overheating: procedure(`[stand the router upright with 10 cm of free space around it], away from other electronics`),
      wontTurnOn: procedure(`[check that the adapter is the 12 V one from the box and try another wall socket]`),
    },
  };
}

function cameraSupport({ controls: c }: ProductEntry): Support {
  return {
    howTo: {
      reset: procedure(`[${hold(c.resetKeys, c.resetSeconds)}] until the rear screen turns off, then switch it on again`),
      pair: procedure(`[turn on Bluetooth in the camera menu, then open the ${c.app} app and tap Add Camera]`),
      updateFirmware: procedure(`with a fully charged battery, [open the ${c.app} app and tap Camera, then Firmware Update]`),
      factoryReset: procedure(
        `[${hold(c.resetKeys, c.factorySeconds)}] until the screen shows Reset Complete, then set the date and time again`,
      ),
    },
    troubleshooting: {
      wontTurnOn: procedure(
        `[charge the battery for ${c.chargeMinutes} minutes in the supplied charger], and make sure the battery door clicks shut`,
      ),
      overheating: procedure(`[record at 1080p or set Auto Power Off Temperature to High] for long takes`),
      batteryDrain: procedure(`[turn off Wi-Fi and Bluetooth in the camera menu] when you are not transferring photos`),
    },
  };
}

const supportByCategory: Record<Category, (entry: ProductEntry) => Support> = {
  headphones: audioSupport,
  earbuds: audioSupport,
  speakers: audioSupport,
  smartwatches: watchSupport,
  tvs: tvSupport,
  monitors: monitorSupport,
  phones: mobileSupport,
  tablets: mobileSupport,
  laptops: laptopSupport,
  keyboards: keyboardSupport,
  routers: routerSupport,
  cameras: cameraSupport,
};

export function supportFor(entry: ProductEntry): Support {
  return supportByCategory[entry.category](entry);
}
